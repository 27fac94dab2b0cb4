//! RFC 3903 cases, the per-presentity limits and the registration
//! hold-off over the in-memory backend.

use std::time::Duration;

use pidf::PresenceInfo;

use super::*;
use crate::sources::{SetSourceCommand, SourceContent};

const ALICE: &str = "alice@example.com";
const T0: u64 = 1_000_000_000;

fn compositor_with(config: PresenceConfig) -> Compositor {
    Compositor::new(Arc::new(store::memory::MemoryBackend::new()), config)
}

fn compositor() -> Compositor {
    compositor_with(PresenceConfig::default())
}

fn pidf_body(status: PresenceStatus, note: &str) -> Bytes {
    let info = PresenceInfo {
        note: Some(note.to_string()),
        ..PresenceInfo::new(status)
    };
    Bytes::from(info.to_document(&entity_of(ALICE)).to_xml())
}

fn initial(note: &str) -> PublishCommand {
    PublishCommand {
        presentity: ALICE.into(),
        if_match: None,
        expires: Some(600),
        body: Some((PIDF.into(), pidf_body(PresenceStatus::Available, note))),
        publisher: ALICE.into(),
    }
}

fn conditional(etag: &str, expires: u32, body: Option<Bytes>) -> PublishCommand {
    PublishCommand {
        if_match: Some(etag.into()),
        expires: Some(expires),
        body: body.map(|b| (PIDF.to_string(), b)),
        ..initial("")
    }
}

fn registration() -> SetSourceCommand {
    SetSourceCommand {
        presentity: ALICE.into(),
        source: REGISTRATION_SOURCE.into(),
        content: SourceContent::Status {
            status: PresenceStatus::Available,
            note: None,
        },
        expires: Some(600),
        publisher: "registrar".into(),
    }
}

/// The composed states announced on `ALICE`'s channel so far.
async fn announced(feed: &mut tokio::sync::mpsc::Receiver<store::FeedItem>) -> usize {
    let mut count = 0;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(200), feed.recv()).await {
        count += 1;
    }
    count
}

#[tokio::test]
async fn initial_refresh_modify_and_remove() {
    let compositor = compositor();
    let first = compositor.publish(&initial("first"), T0).await.unwrap();
    assert!(!first.etag.is_empty());
    assert_eq!(first.expires, 600);
    let view = compositor.view(ALICE).await.unwrap();
    assert_eq!(view.version, first.version);
    assert_eq!(view.basic, Basic::Open);
    assert_eq!(view.note.as_deref(), Some("first"));

    // Refresh: a new entity-tag, the state (and its version) unchanged.
    let refreshed = compositor
        .publish(&conditional(&first.etag, 900, None), T0 + 1_000)
        .await
        .unwrap();
    assert_ne!(refreshed.etag, first.etag);
    assert_eq!(refreshed.version, first.version);
    // The old tag is spent (§6: 412 for it now).
    assert!(matches!(
        compositor
            .publish(&conditional(&first.etag, 900, None), T0 + 1_000)
            .await,
        Err(PublishError::UnknownEtag(_))
    ));

    // Modify: a new document, a new version.
    let modified = compositor
        .publish(
            &conditional(
                &refreshed.etag,
                600,
                Some(pidf_body(PresenceStatus::Busy, "second")),
            ),
            T0 + 2_000,
        )
        .await
        .unwrap();
    assert!(modified.version > first.version);
    assert_eq!(
        compositor.view(ALICE).await.unwrap().note.as_deref(),
        Some("second")
    );

    // Remove: no tag, closed.
    let removed = compositor
        .publish(&conditional(&modified.etag, 0, None), T0 + 3_000)
        .await
        .unwrap();
    assert!(removed.etag.is_empty());
    assert_eq!(compositor.view(ALICE).await.unwrap().basic, Basic::Closed);
}

#[tokio::test]
async fn what_is_refused_is_never_stored() {
    let compositor = compositor();
    let no_body = PublishCommand {
        body: None,
        ..initial("")
    };
    assert!(matches!(
        compositor.publish(&no_body, T0).await,
        Err(PublishError::BadRequest(_))
    ));
    let zero = PublishCommand {
        expires: Some(0),
        ..initial("x")
    };
    assert!(matches!(
        compositor.publish(&zero, T0).await,
        Err(PublishError::BadRequest(_))
    ));
    let brief = PublishCommand {
        expires: Some(compositor.config().min_publish_expires - 1),
        ..initial("x")
    };
    assert!(matches!(
        compositor.publish(&brief, T0).await,
        Err(PublishError::IntervalTooBrief { .. })
    ));
    let text = PublishCommand {
        body: Some(("text/plain".into(), Bytes::from_static(b"hi"))),
        ..initial("x")
    };
    assert!(matches!(
        compositor.publish(&text, T0).await,
        Err(PublishError::UnsupportedMediaType(_))
    ));
    let broken = PublishCommand {
        body: Some((PIDF.into(), Bytes::from_static(b"<presence"))),
        ..initial("x")
    };
    assert!(matches!(
        compositor.publish(&broken, T0).await,
        Err(PublishError::BadRequest(_))
    ));
    assert!(matches!(
        compositor
            .publish(&conditional("nope", 600, None), T0)
            .await,
        Err(PublishError::UnknownEtag(_))
    ));
    assert_eq!(compositor.view(ALICE).await.unwrap().version, 0);
    // Too long an interval is shortened, not refused.
    let long = PublishCommand {
        expires: Some(u32::MAX),
        ..initial("x")
    };
    let granted = compositor.publish(&long, T0).await.unwrap();
    assert_eq!(granted.expires, compositor.config().max_publish_expires);
}

#[tokio::test]
async fn devices_are_composed_and_an_expiry_recomposes_once() {
    let compositor = compositor();
    let phone = PublishCommand {
        expires: Some(60),
        ..initial("phone")
    };
    compositor.publish(&phone, T0).await.unwrap();
    let desk = PublishCommand {
        body: Some((PIDF.into(), pidf_body(PresenceStatus::Offline, "desk"))),
        ..initial("desk")
    };
    let both = compositor.publish(&desk, T0 + 1).await.unwrap();
    let (_, record) = compositor.load(ALICE).await.unwrap();
    assert_eq!(record.publications.len(), 2);
    assert_eq!(compositor.view(ALICE).await.unwrap().basic, Basic::Open);
    // Nothing due yet.
    assert_eq!(compositor.expire(ALICE, T0 + 30_000).await.unwrap(), None);
    let expired = compositor.expire(ALICE, T0 + 60_000).await.unwrap();
    assert!(expired.is_some_and(|v| v > both.version));
    assert_eq!(compositor.view(ALICE).await.unwrap().basic, Basic::Closed);
    // A second sweeper finds nothing left to do.
    assert_eq!(compositor.expire(ALICE, T0 + 60_000).await.unwrap(), None);
}

#[tokio::test]
async fn publications_beyond_the_limit_are_refused_before_composing() {
    let compositor = compositor_with(PresenceConfig {
        max_publications: 2,
        ..PresenceConfig::default()
    });
    compositor.set_source(&registration(), T0).await.unwrap();
    let first = compositor.publish(&initial("one"), T0).await.unwrap();
    let second = compositor.publish(&initial("two"), T0).await.unwrap();
    let (_, before) = compositor.load(ALICE).await.unwrap();
    let third = compositor.publish(&initial("three"), T0).await;
    assert!(
        matches!(third, Err(PublishError::TooManyPublications { limit: 2 })),
        "{third:?}"
    );
    let app = SetSourceCommand {
        source: "calendar".into(),
        ..registration()
    };
    assert!(matches!(
        compositor.set_source(&app, T0).await,
        Err(PublishError::TooManyPublications { .. })
    ));
    // Nothing was stored or composed for the refusals.
    assert_eq!(compositor.load(ALICE).await.unwrap().1, before);
    // Refreshes and modifications of what exists still pass, and so
    // does the registration's own publication.
    compositor
        .publish(&conditional(&first.etag, 600, None), T0)
        .await
        .unwrap();
    compositor
        .publish(
            &conditional(
                &second.etag,
                600,
                Some(pidf_body(PresenceStatus::Away, "2")),
            ),
            T0,
        )
        .await
        .unwrap();
    compositor
        .set_source(&registration(), T0 + 1)
        .await
        .unwrap();
    assert!(telemetry::encode().contains("presence_limit_refusals_total{limit=\"publications\"}"));
}

#[tokio::test]
async fn documents_beyond_the_byte_limit_are_refused() {
    let one = pidf_body(PresenceStatus::Available, "x").len();
    let compositor = compositor_with(PresenceConfig {
        max_document_bytes: one * 2 + 10,
        ..PresenceConfig::default()
    });
    let first = compositor.publish(&initial("x"), T0).await.unwrap();
    compositor.publish(&initial("y"), T0).await.unwrap();
    assert!(matches!(
        compositor.publish(&initial("z"), T0).await,
        Err(PublishError::DocumentTooLarge { .. })
    ));
    let longer = pidf_body(PresenceStatus::Available, &"n".repeat(64));
    assert!(matches!(
        compositor
            .publish(&conditional(&first.etag, 600, Some(longer)), T0)
            .await,
        Err(PublishError::DocumentTooLarge { .. })
    ));
    // Removing is always possible.
    compositor
        .publish(&conditional(&first.etag, 0, None), T0)
        .await
        .unwrap();
    assert!(telemetry::encode().contains("presence_limit_refusals_total{limit=\"document_bytes\"}"));
}

#[tokio::test]
async fn after_an_unpublish_the_bindings_going_show_closed_without_open_between() {
    let compositor = compositor();
    let (control, mut feed) = compositor.backend().open_feed().await.unwrap();
    control.watch(ALICE).await.unwrap();
    let now = contract::now_ms();
    compositor.set_source(&registration(), now).await.unwrap();
    let own = compositor.publish(&initial("busy"), now + 1).await.unwrap();
    assert_eq!(announced(&mut feed).await, 2);
    // The phone un-PUBLISHes: nothing is announced yet, the last own
    // state stays.
    compositor
        .publish(&conditional(&own.etag, 0, None), now + 2)
        .await
        .unwrap();
    assert_eq!(announced(&mut feed).await, 0);
    let view = compositor.view(ALICE).await.unwrap();
    assert_eq!(view.version, own.version);
    assert_eq!(view.note.as_deref(), Some("busy"));
    // …and un-REGISTERs within the hold-off: straight to closed.
    compositor
        .clear_source(ALICE, REGISTRATION_SOURCE, now + 3)
        .await
        .unwrap();
    assert_eq!(announced(&mut feed).await, 1);
    let view = compositor.view(ALICE).await.unwrap();
    assert_eq!(view.basic, Basic::Closed);
    assert!(view.version > own.version);
}

#[tokio::test]
async fn a_phone_that_stays_registered_shows_the_registration_after_the_hold_off() {
    let compositor = compositor();
    let holdoff = compositor.config().registration_holdoff_ms;
    compositor.set_source(&registration(), T0).await.unwrap();
    let own = compositor.publish(&initial("busy"), T0 + 1).await.unwrap();
    compositor
        .publish(&conditional(&own.etag, 0, None), T0 + 2)
        .await
        .unwrap();
    // A registration refresh within the hold-off changes nothing.
    compositor
        .set_source(&registration(), T0 + 3)
        .await
        .unwrap();
    assert_eq!(compositor.expire(ALICE, T0 + 3).await.unwrap(), None);
    assert_eq!(compositor.view(ALICE).await.unwrap().version, own.version);
    // The sweeper comes at the hold-off's end: the registration shows.
    let (_, record) = compositor.load(ALICE).await.unwrap();
    assert_eq!(record.fallback_at_ms, T0 + 2 + holdoff);
    let shown = compositor.expire(ALICE, T0 + 2 + holdoff).await.unwrap();
    assert!(shown.is_some_and(|v| v > own.version));
    let view = compositor.view(ALICE).await.unwrap();
    assert_eq!(view.basic, Basic::Open);
    assert_eq!(view.note, None);
    assert_eq!(compositor.load(ALICE).await.unwrap().1.fallback_at_ms, 0);
    // A presentity that never published itself shows its registration at
    // once: nothing is held back.
    let other = self::compositor();
    other.set_source(&registration(), T0).await.unwrap();
    assert_eq!(other.view(ALICE).await.unwrap().basic, Basic::Open);
}

fn publication(etag: &str, source: Option<&str>) -> StoredPublication {
    StoredPublication {
        etag: etag.into(),
        expires_at_ms: T0 + 600_000,
        published_at_ms: T0,
        body: String::from_utf8(pidf_body(PresenceStatus::Away, "in \"Zürich\" <&> 🙂").to_vec())
            .unwrap(),
        publisher: "alice@example.com".into(),
        source: source.map(Into::into),
    }
}

#[test]
fn a_presentity_record_round_trips_in_the_binary_encoding() {
    let record = PresentityRecord {
        version: u64::MAX,
        publications: vec![
            publication("e1", None),
            publication("e2", Some(REGISTRATION_SOURCE)),
            publication("", Some("")),
        ],
        composed: "<presence>ünïcödé</presence>".into(),
        composed_own: true,
        fallback_at_ms: T0,
    };
    let bytes = record.encode();
    assert_eq!(bytes[0], contract::codec::TAG);
    assert_eq!(PresentityRecord::decode(&bytes).unwrap(), record);
    let empty = PresentityRecord::default();
    assert_eq!(PresentityRecord::decode(&empty.encode()).unwrap(), empty);
    // Every truncation is an error, never a panic.
    for len in 0..bytes.len() {
        assert!(PresentityRecord::decode(&bytes[..len]).is_err(), "{len}");
    }
}

#[test]
fn a_presentity_record_in_the_old_json_encoding_is_still_read() {
    let json = br#"{"version":7,"publications":[{"etag":"e1","expires_at_ms":5,
        "published_at_ms":1,"body":"<presence>\"x\"</presence>","publisher":"alice"},
        {"etag":"e2","expires_at_ms":6,"published_at_ms":2,"body":"b","publisher":"r",
        "source":"registration"}],"composed":"<c/>"}"#;
    let record = PresentityRecord::decode(json).unwrap();
    assert_eq!(record.version, 7);
    assert_eq!(record.publications.len(), 2);
    assert_eq!(record.publications[0].body, "<presence>\"x\"</presence>");
    assert_eq!(record.publications[0].source, None);
    assert_eq!(
        record.publications[1].source.as_deref(),
        Some(REGISTRATION_SOURCE)
    );
    assert!(!record.composed_own);
    assert_eq!(record.fallback_at_ms, 0);
    // What the previous release wrote is what serde still writes.
    let reencoded = serde_json::to_vec(&record).unwrap();
    assert_eq!(PresentityRecord::decode(&reencoded).unwrap(), record);
}

#[test]
fn garbage_is_not_a_presentity_record() {
    for garbage in [
        &b""[..],
        b"\x00",
        b"\x01",
        b"\x01\x02",
        b"{",
        b"{}",
        b"null",
        b"\xff\xfe",
    ] {
        assert!(PresentityRecord::decode(garbage).is_err(), "{garbage:?}");
    }
}

#[tokio::test]
async fn a_record_the_previous_release_wrote_is_read_and_rewritten_binary() {
    let compositor = compositor();
    let first = compositor.publish(&initial("old"), T0).await.unwrap();
    let (rev, record) = compositor.load(ALICE).await.unwrap();
    let key = Compositor::key(ALICE);
    let json = serde_json::to_vec(&record).unwrap();
    let backend = compositor.backend();
    assert!(backend
        .cas_record(&key, rev, Some(Bytes::from(json)), None, None)
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        compositor.view(ALICE).await.unwrap().note.as_deref(),
        Some("old")
    );
    let refreshed = compositor
        .publish(&conditional(&first.etag, 600, None), T0 + 1)
        .await
        .unwrap();
    assert!(!refreshed.etag.is_empty());
    let stored = backend.get_record(&key).await.unwrap().unwrap();
    assert_eq!(stored.value[0], contract::codec::TAG);
    let record = PresentityRecord::decode(&stored.value).unwrap();
    assert_eq!(record.publications[0].etag, refreshed.etag);
}

#[test]
fn in_upgrade_mode_a_presentity_record_is_written_as_json_and_read_back() {
    let record = PresentityRecord {
        version: 9,
        publications: vec![StoredPublication {
            etag: "e".into(),
            expires_at_ms: 5,
            published_at_ms: 1,
            body: "<presence>\"x\"</presence>".into(),
            publisher: "alice".into(),
            source: None,
        }],
        composed: "<c/>".into(),
        composed_own: true,
        fallback_at_ms: 0,
    };
    let json = record.encode_with(true);
    assert_eq!(json[0], b'{');
    assert!(serde_json::from_slice::<PresentityRecord>(&json).is_ok());
    assert_eq!(PresentityRecord::decode(&json).unwrap(), record);
}
