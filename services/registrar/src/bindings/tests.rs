//! RFC 3261 §10.3 and RFC 5626/5627 cases over the in-memory backend.

use super::*;

const AOR: &str = "alice@example.com";
const T0: u64 = 1_000_000_000;

fn registrar() -> (Registrar, Arc<dyn Backend>) {
    let backend: Arc<dyn Backend> = Arc::new(store::memory::MemoryBackend::new());
    (
        Registrar::new(backend.clone(), RegistrarConfig::default()),
        backend,
    )
}

fn contact(uri: &str, expires: Option<u32>) -> ContactUpdate {
    ContactUpdate {
        uri: uri.into(),
        expires,
        ..ContactUpdate::default()
    }
}

fn instance(uri: &str, expires: u32, instance: &str, reg_id: Option<u32>) -> ContactUpdate {
    ContactUpdate {
        uri: uri.into(),
        expires: Some(expires),
        instance_id: instance.into(),
        reg_id,
        ..ContactUpdate::default()
    }
}

fn command(call_id: &str, cseq: u32, contacts: Vec<ContactUpdate>) -> RegisterCommand {
    RegisterCommand {
        aor: AOR.into(),
        contacts,
        call_id: call_id.into(),
        cseq,
        ..RegisterCommand::default()
    }
}

fn uris(bindings: &[Binding]) -> Vec<&str> {
    bindings.iter().map(|b| b.uri.as_str()).collect()
}

#[tokio::test]
async fn a_contact_is_added_refreshed_and_removed_by_its_uri() {
    let (registrar, _) = registrar();
    let first = registrar
        .register(
            &command("c1", 1, vec![contact("sip:a@10.0.0.1", Some(600))]),
            T0,
        )
        .await
        .unwrap();
    assert_eq!(uris(&first), ["sip:a@10.0.0.1"]);
    assert_eq!(first[0].expires_at_ms, T0 + 600_000);
    // Step 8: the same URI again is an update, not a second binding.
    let refreshed = registrar
        .register(
            &command("c1", 2, vec![contact("sip:a@10.0.0.1", Some(900))]),
            T0 + 1_000,
        )
        .await
        .unwrap();
    assert_eq!(uris(&refreshed), ["sip:a@10.0.0.1"]);
    assert_eq!(refreshed[0].expires_at_ms, T0 + 1_000 + 900_000);
    assert_eq!(refreshed[0].cseq, 2);
    let removed = registrar
        .register(
            &command("c1", 3, vec![contact("sip:a@10.0.0.1", Some(0))]),
            T0 + 2_000,
        )
        .await
        .unwrap();
    assert!(removed.is_empty());
    assert!(registrar.lookup(AOR, T0 + 2_000).await.unwrap().is_empty());
}

#[tokio::test]
async fn expiry_defaults_clamps_and_refuses_too_brief_intervals() {
    let (registrar, _) = registrar();
    let config = registrar.config().clone();
    let bindings = registrar
        .register(
            &command(
                "c1",
                1,
                vec![
                    contact("sip:a@10.0.0.1", None),
                    contact("sip:a@10.0.0.2", Some(config.max_expires * 10)),
                ],
            ),
            T0,
        )
        .await
        .unwrap();
    assert_eq!(
        bindings[0].expires_at_ms,
        T0 + u64::from(config.default_expires) * 1000
    );
    assert_eq!(
        bindings[1].expires_at_ms,
        T0 + u64::from(config.max_expires) * 1000
    );
    let brief = registrar
        .register(
            &command(
                "c1",
                2,
                vec![contact("sip:a@10.0.0.3", Some(config.min_expires - 1))],
            ),
            T0,
        )
        .await;
    assert!(matches!(
        brief,
        Err(RegisterError::IntervalTooBrief { min_expires }) if min_expires == config.min_expires
    ));
}

#[tokio::test]
async fn a_wildcard_removes_every_binding_and_must_stand_alone() {
    let (registrar, _) = registrar();
    registrar
        .register(
            &command(
                "c1",
                1,
                vec![
                    contact("sip:a@10.0.0.1", Some(600)),
                    contact("sip:a@10.0.0.2", Some(600)),
                ],
            ),
            T0,
        )
        .await
        .unwrap();
    let mixed = RegisterCommand {
        remove_all: true,
        ..command("c1", 2, vec![contact("sip:a@10.0.0.1", Some(0))])
    };
    assert!(matches!(
        registrar.register(&mixed, T0).await,
        Err(RegisterError::InvalidWildcard)
    ));
    let all = RegisterCommand {
        remove_all: true,
        ..command("c1", 3, vec![])
    };
    assert!(registrar.register(&all, T0).await.unwrap().is_empty());
    assert!(registrar.lookup(AOR, T0).await.unwrap().is_empty());
    let no_aor = RegisterCommand {
        aor: String::new(),
        ..command("c1", 4, vec![])
    };
    assert!(matches!(
        registrar.register(&no_aor, T0).await,
        Err(RegisterError::MissingAor)
    ));
}

#[tokio::test]
async fn a_request_not_newer_than_its_call_ids_binding_fails_and_changes_nothing() {
    let (registrar, _) = registrar();
    registrar
        .register(
            &command("c1", 5, vec![contact("sip:a@10.0.0.1", Some(600))]),
            T0,
        )
        .await
        .unwrap();
    for cseq in [4, 5] {
        let stale = registrar
            .register(
                &command("c1", cseq, vec![contact("sip:a@10.0.0.1", Some(0))]),
                T0,
            )
            .await;
        assert!(
            matches!(stale, Err(RegisterError::OutOfOrder { cseq: c }) if c == cseq),
            "{stale:?}"
        );
        let wildcard = RegisterCommand {
            remove_all: true,
            ..command("c1", cseq, vec![])
        };
        assert!(matches!(
            registrar.register(&wildcard, T0).await,
            Err(RegisterError::OutOfOrder { .. })
        ));
    }
    assert_eq!(
        uris(&registrar.lookup(AOR, T0).await.unwrap()),
        ["sip:a@10.0.0.1"]
    );
    // Another Call-ID is another client: its CSeq is its own.
    let other = registrar
        .register(
            &command("c2", 1, vec![contact("sip:a@10.0.0.1", Some(600))]),
            T0,
        )
        .await
        .unwrap();
    assert_eq!(other[0].call_id, "c2");
}

#[tokio::test]
async fn the_same_instance_from_a_new_address_replaces_its_binding() {
    let (registrar, _) = registrar();
    let id = "<urn:uuid:00000000-0000-1000-8000-000000000001>";
    registrar
        .register(
            &command(
                "c1",
                1,
                vec![instance(
                    "sip:a@10.0.0.1:40001;transport=tcp",
                    600,
                    id,
                    None,
                )],
            ),
            T0,
        )
        .await
        .unwrap();
    // Another device with its own instance stays.
    registrar
        .register(
            &command(
                "c9",
                1,
                vec![instance(
                    "sip:a@10.0.0.9",
                    600,
                    "<urn:uuid:00000000-0000-1000-8000-000000000009>",
                    None,
                )],
            ),
            T0,
        )
        .await
        .unwrap();
    // A new TCP connection, a new port, the same instance: one binding.
    let after = registrar
        .register(
            &command(
                "c1",
                2,
                vec![instance(
                    "sip:a@10.0.0.1:40002;transport=tcp",
                    600,
                    id,
                    None,
                )],
            ),
            T0 + 1_000,
        )
        .await
        .unwrap();
    let mut listed = uris(&after);
    listed.sort_unstable();
    assert_eq!(
        listed,
        ["sip:a@10.0.0.1:40002;transport=tcp", "sip:a@10.0.0.9"]
    );
    // Its un-REGISTER leaves nothing of it behind.
    let after = registrar
        .register(
            &command(
                "c1",
                3,
                vec![instance("sip:a@10.0.0.1:40002;transport=tcp", 0, id, None)],
            ),
            T0 + 2_000,
        )
        .await
        .unwrap();
    assert_eq!(uris(&after), ["sip:a@10.0.0.9"]);
}

#[tokio::test]
async fn with_reg_id_the_instance_and_reg_id_pair_names_the_flow() {
    let (registrar, _) = registrar();
    let id = "<urn:uuid:00000000-0000-1000-8000-000000000001>";
    registrar
        .register(
            &command(
                "c1",
                1,
                vec![
                    instance("sip:a@10.0.0.1;ob", 600, id, Some(1)),
                    instance("sip:a@10.0.0.1;ob", 600, id, Some(2)),
                ],
            ),
            T0,
        )
        .await
        .unwrap();
    assert_eq!(registrar.lookup(AOR, T0).await.unwrap().len(), 2);
    // Flow 1 comes back over another connection: it replaces flow 1 only.
    let after = registrar
        .register(
            &command(
                "c1",
                2,
                vec![instance("sip:a@10.0.0.2;ob", 600, id, Some(1))],
            ),
            T0,
        )
        .await
        .unwrap();
    let mut flows: Vec<(Option<u32>, &str)> =
        after.iter().map(|b| (b.reg_id, b.uri.as_str())).collect();
    flows.sort_unstable();
    assert_eq!(
        flows,
        [
            (Some(1), "sip:a@10.0.0.2;ob"),
            (Some(2), "sip:a@10.0.0.1;ob")
        ]
    );
}

#[tokio::test]
async fn expire_removes_only_the_bindings_that_are_due() {
    let (registrar, _) = registrar();
    registrar
        .register(
            &command(
                "c1",
                1,
                vec![
                    contact("sip:a@10.0.0.1", Some(60)),
                    contact("sip:a@10.0.0.2", Some(600)),
                ],
            ),
            T0,
        )
        .await
        .unwrap();
    assert!(!registrar.expire(AOR, T0 + 30_000).await.unwrap());
    assert!(registrar.expire(AOR, T0 + 60_000).await.unwrap());
    assert_eq!(
        uris(&registrar.lookup(AOR, T0 + 60_000).await.unwrap()),
        ["sip:a@10.0.0.2"]
    );
    assert!(registrar.expire(AOR, T0 + 600_000).await.unwrap());
    assert!(registrar.lookup_many(&[AOR.to_string()], T0).await.unwrap()[0].is_empty());
}

#[tokio::test]
async fn registrations_drive_presence_until_the_last_binding_goes() {
    let (registrar, backend) = registrar();
    let compositor = presence::Compositor::new(backend, presence::PresenceConfig::default());
    let now = contract::now_ms();
    registrar
        .register(
            &command("c1", 1, vec![contact("sip:a@10.0.0.1", Some(600))]),
            now,
        )
        .await
        .unwrap();
    assert_eq!(compositor.view(AOR).await.unwrap().basic, pidf::Basic::Open);
    registrar
        .register(
            &command("c1", 2, vec![contact("sip:a@10.0.0.1", Some(0))]),
            now,
        )
        .await
        .unwrap();
    assert_eq!(
        compositor.view(AOR).await.unwrap().basic,
        pidf::Basic::Closed
    );
}

fn stored_binding(uri: &str, instance_id: &str, reg_id: Option<u32>) -> Binding {
    Binding {
        uri: uri.into(),
        expires_at_ms: T0 + 3_600_000,
        q_milli: Some(500),
        instance_id: instance_id.into(),
        reg_id,
        call_id: "call-ü@host".into(),
        cseq: u32::MAX,
        transport: "tls".into(),
        source: "[2001:db8::1]:5061".into(),
        user_agent: "Phöne/1.0 \"beta\" 🙂".into(),
    }
}

#[test]
fn stored_bindings_round_trip_in_the_binary_encoding() {
    let stored = StoredBindings {
        bindings: vec![
            stored_binding(
                "sip:a@10.0.0.1;ob",
                "<urn:uuid:00000000-0000-1000-8000-000a95a0e128>",
                Some(1),
            ),
            Binding {
                q_milli: None,
                ..stored_binding("sip:b@10.0.0.2", "", None)
            },
        ],
    };
    let bytes = StoredBindings::encode(&stored.bindings);
    assert_eq!(bytes[0], contract::codec::TAG);
    assert_eq!(StoredBindings::decode(&bytes).unwrap(), stored);
    for len in 0..bytes.len() {
        assert!(StoredBindings::decode(&bytes[..len]).is_err(), "{len}");
    }
    let empty = StoredBindings::default();
    assert_eq!(
        StoredBindings::decode(&StoredBindings::encode(&[])).unwrap(),
        empty
    );
}

#[test]
fn stored_bindings_in_the_old_json_encoding_are_still_read() {
    // As the previous release wrote them; the first without the fields
    // that came later.
    let json = br#"{"bindings":[{"uri":"sip:a@10.0.0.1","expires_at_ms":5,
        "call_id":"c1","cseq":2},{"uri":"sip:b@10.0.0.2","expires_at_ms":6,
        "q_milli":700,"instance_id":"<urn:x>","reg_id":1,"call_id":"c2","cseq":3,
        "transport":"tcp","source":"10.0.0.2:5060","user_agent":"ua"}]}"#;
    let stored = StoredBindings::decode(json).unwrap();
    assert_eq!(stored.bindings.len(), 2);
    assert_eq!(stored.bindings[0].q_milli, None);
    assert_eq!(stored.bindings[0].instance_id, "");
    assert_eq!(stored.bindings[1].q_milli, Some(700));
    assert_eq!(stored.bindings[1].reg_id, Some(1));
    assert_eq!(stored.bindings[1].user_agent, "ua");
}

#[test]
fn garbage_is_not_stored_bindings() {
    for garbage in [
        &b""[..],
        b"\x01\x01",
        b"\x01\x01\x05",
        b"\x02",
        b"{}",
        b"[]",
    ] {
        assert!(StoredBindings::decode(garbage).is_err(), "{garbage:?}");
    }
}

#[tokio::test]
async fn bindings_the_previous_release_wrote_keep_working() {
    let (registrar, backend) = registrar();
    let json = br#"{"bindings":[{"uri":"sip:a@10.0.0.1","expires_at_ms":1000600000,
        "call_id":"c1","cseq":1}]}"#;
    backend
        .cas_record(
            &Registrar::key(AOR),
            0,
            Some(Bytes::from_static(json)),
            None,
            None,
        )
        .await
        .unwrap();
    let live = registrar.lookup(AOR, T0).await.unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].uri, "sip:a@10.0.0.1");
    registrar
        .register(
            &command("c2", 1, vec![contact("sip:b@10.0.0.2", Some(600))]),
            T0,
        )
        .await
        .unwrap();
    let stored = backend
        .get_record(&Registrar::key(AOR))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.value[0], contract::codec::TAG);
    assert_eq!(
        StoredBindings::decode(&stored.value)
            .unwrap()
            .bindings
            .len(),
        2
    );
    assert_eq!(registrar.lookup(AOR, T0).await.unwrap().len(), 2);
}

#[test]
fn in_upgrade_mode_bindings_are_written_as_json_and_read_back() {
    let stored = StoredBindings {
        bindings: vec![stored_binding("sip:a@10.0.0.1", "", None)],
    };
    let json = StoredBindings::encode_with(&stored.bindings, true);
    assert_eq!(json[0], b'{');
    assert!(serde_json::from_slice::<StoredBindings>(&json).is_ok());
    assert_eq!(StoredBindings::decode(&json).unwrap(), stored);
}
