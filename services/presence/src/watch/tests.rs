use super::*;

#[test]
fn news_is_what_is_newer_or_a_vanished_record() {
    assert!(is_news(5, None));
    assert!(is_news(0, None));
    assert!(is_news(6, Some(5)));
    assert!(!is_news(5, Some(5)));
    assert!(!is_news(4, Some(5)));
    assert!(is_news(0, Some(5)));
    assert!(!is_news(0, Some(0)));
}

#[test]
fn requests_are_checked_and_deduplicated() {
    let request = WatchRequest::new(
        vec!["a@x".into(), "b@x".into(), "a@x".into()],
        HashMap::new(),
    );
    assert_eq!(
        request.map(|r| r.presentities).ok(),
        Some(vec!["a@x".to_string(), "b@x".to_string()])
    );
    assert!(WatchRequest::new(vec![], HashMap::new()).is_err());
    assert!(WatchRequest::new(vec![String::new()], HashMap::new()).is_err());
    assert!(WatchRequest::new(vec!["a b@x".into()], HashMap::new()).is_err());
    assert!(WatchRequest::new(vec!["a\n@x".into()], HashMap::new()).is_err());
    assert!(WatchRequest::new(vec!["a".repeat(513)], HashMap::new()).is_err());
    let many = (0..=MAX_WATCHED).map(|i| format!("u{i}@x")).collect();
    assert!(WatchRequest::new(many, HashMap::new()).is_err());
}

fn compositor() -> Compositor {
    Compositor::new(
        Arc::new(store::memory::MemoryBackend::new()),
        crate::PresenceConfig::default(),
    )
}

async fn next(
    events: &mut mpsc::Receiver<Result<pb::WatchPresenceEvent, Status>>,
) -> Option<pb::watch_presence_event::Event> {
    tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .ok()
        .flatten()
        .and_then(Result::ok)
        .and_then(|e| e.event)
}

#[tokio::test]
async fn channels_are_watched_while_a_stream_wants_them() {
    let compositor = compositor();
    let hub = WatchHub::new(compositor.backend().clone());
    let request = |names: &[&str]| {
        WatchRequest::new(
            names.iter().map(|n| n.to_string()).collect(),
            HashMap::new(),
        )
    };
    let Ok(first) = request(&["a@x", "b@x"]) else {
        panic!("valid request");
    };
    let Ok(second) = request(&["b@x", "c@x"]) else {
        panic!("valid request");
    };
    let mut one = start(&hub, compositor.clone(), first).await.ok();
    let two = start(&hub, compositor.clone(), second).await.ok();
    assert!(one.is_some() && two.is_some());
    assert_eq!(hub.watched_channels(), 3);

    // A change reaches the stream, after its snapshot and `synced`.
    if let Some(events) = one.as_mut() {
        for _ in 0..3 {
            assert!(next(events).await.is_some());
        }
    }
    let command = crate::sources::SetSourceCommand {
        presentity: "a@x".into(),
        source: "test".into(),
        content: crate::sources::SourceContent::Status {
            status: pidf::PresenceStatus::Away,
            note: None,
        },
        expires: Some(600),
        publisher: "test".into(),
    };
    let set = compositor.set_source(&command, contract::now_ms()).await;
    let version = set.map(|o| o.version).unwrap_or_default();
    let change = match one.as_mut() {
        Some(events) => next(events).await,
        None => None,
    };
    match change {
        Some(pb::watch_presence_event::Event::State(state)) => {
            assert_eq!(state.presentity, "a@x");
            assert_eq!(state.version, version);
            assert_eq!(state.status, "away");
        }
        other => panic!("expected a state, got {other:?}"),
    }

    // The first stream goes away: only its own channel is unwatched.
    drop(one);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while hub.watched_channels() != 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "channel not unwatched"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(two);
    while hub.watched_channels() != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "channels not unwatched"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn a_full_inbox_turns_into_a_resync() {
    let inbox = Inbox::default();
    for version in 0..(INBOX_CAPACITY as u64 + 1) {
        inbox.push(Change {
            presentity: "a@x".into(),
            version,
            pidf: String::new(),
        });
    }
    let pending = inbox.take();
    assert!(pending.resync);
    assert!(pending.changes.is_empty());
    assert!(!inbox.take().resync);
}
