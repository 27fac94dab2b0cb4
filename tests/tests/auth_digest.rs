//! Digest authentication end to end (RFC 2617 MD5, RFC 8760 SHA-256 and
//! SHA-512-256, `qop=auth`): real edges challenge over UDP, the test answers
//! like a phone would, computing each response from the RFC itself.

use std::io::Write as _;
use std::time::{Duration, Instant};

use crate::auth_support::{
    bearer, digest_challenges, ha1, publish, register, register_uri, stored_subscriptions,
    subscribe, www_authenticate, DigestAnswer, DigestChallenge, Extra,
};
use cluster_tests::cluster::Cluster;
use cluster_tests::ua::Ua;
use sip::{Authorization, HeaderName, Response};
use tokio::task::block_in_place;

const REALM: &str = "example.com";

/// Alice has precomputed HA1s for every algorithm; Bob a clear-text
/// password (the development form, valid for every algorithm).
fn credentials_file() -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("credentials file");
    writeln!(file, "# user:realm:HA1[:algorithm]").expect("writing");
    for algorithm in ["MD5", "SHA-256", "SHA-512-256"] {
        writeln!(
            file,
            "alice:{REALM}:{}:{algorithm}",
            ha1(algorithm, "alice", REALM, "alice-password")
        )
        .expect("writing");
    }
    writeln!(file, "bob:bob-password").expect("writing");
    file.flush().expect("flushing");
    file
}

fn digest_args(file: &tempfile::NamedTempFile, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--auth-digest-ha1-file".into(),
        file.path().display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// The challenge for `algorithm` in a 401.
fn challenge_for(response: &Response, algorithm: &str) -> DigestChallenge {
    assert_eq!(response.status(), 401, "expected a challenge");
    digest_challenges(response)
        .into_iter()
        .find(|c| c.algorithm == algorithm)
        .unwrap_or_else(|| {
            panic!(
                "no {algorithm} challenge in {:?}",
                www_authenticate(response)
            )
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_challenges_are_answered_with_md5_sha256_and_sha512_256() {
    let file = credentials_file();
    let mut cluster = block_in_place(|| Cluster::start(0));
    // Two edges sharing the nonce key, accepting Bearer and Digest.
    let mut args = cluster.tokens.edge_args();
    args.extend(digest_args(
        &file,
        &[
            "--auth-mode",
            "bearer,digest",
            "--auth-digest-realm",
            REALM,
            "--auth-digest-algorithms",
            "SHA-512-256,SHA-256,MD5",
            "--auth-digest-secret",
            "shared by every edge of the cluster",
        ],
    ));
    let first = block_in_place(|| cluster.add_edge_with_auth("edge-digest-a", &args));
    let second = block_in_place(|| cluster.add_edge_with_auth("edge-digest-b", &args));
    let mut alice = Ua::udp("alice@example.com", cluster.edge(first)).await;

    // No credentials: one Digest challenge per algorithm, strongest first,
    // sharing one nonce, then the Bearer challenge.
    let challenged = register(&mut alice, "alice@example.com", Vec::new()).await;
    assert_eq!(challenged.status(), 401);
    let values = www_authenticate(&challenged);
    assert_eq!(values.len(), 4, "{values:?}");
    assert_eq!(
        values[3],
        "Bearer realm=\"presence-test\", scope=\"sip:register\""
    );
    let digests = digest_challenges(&challenged);
    let algorithms: Vec<&str> = digests.iter().map(|c| c.algorithm.as_str()).collect();
    assert_eq!(algorithms, ["SHA-512-256", "SHA-256", "MD5"]);
    for challenge in &digests {
        assert_eq!(challenge.realm, REALM);
        assert_eq!(challenge.qop.as_deref(), Some("auth"));
        assert_eq!(challenge.nonce, digests[0].nonce);
        assert!(challenge.opaque.is_some());
        assert!(!challenge.stale);
    }

    // MD5 (RFC 2617): the answer registers Alice.
    let md5 = challenge_for(&challenged, "MD5");
    let uri = register_uri("alice@example.com");
    let answer = |challenge: &DigestChallenge, nc: u32| {
        DigestAnswer {
            challenge,
            user: "alice",
            password: "alice-password",
            method: "REGISTER",
            uri: &uri,
            nc,
        }
        .extra()
    };
    let ok = register(&mut alice, "alice@example.com", answer(&md5, 1)).await;
    assert_eq!(ok.status(), 200, "MD5 answer");

    // The same nonce with a higher count is fine (RFC 2617 §3.2.2)...
    let second_use = answer(&md5, 2);
    let ok = register(&mut alice, "alice@example.com", second_use.clone()).await;
    assert_eq!(ok.status(), 200, "nonce reused with nc=2");
    // ...but the same credentials again, in a new request, are a replay.
    let replayed = register(&mut alice, "alice@example.com", second_use).await;
    assert_eq!(replayed.status(), 401, "replayed nonce count");
    let fresh = digest_challenges(&replayed);
    assert_eq!(fresh.len(), 3);
    assert!(fresh.iter().all(|c| !c.stale && c.nonce != md5.nonce));

    // SHA-256 (RFC 8760) for a PUBLISH, challenged first like a phone is.
    let challenged = publish(&mut alice, "alice@example.com", Vec::new()).await;
    let sha256 = challenge_for(&challenged, "SHA-256");
    let published = publish(
        &mut alice,
        "alice@example.com",
        DigestAnswer {
            challenge: &sha256,
            user: "alice",
            password: "alice-password",
            method: "PUBLISH",
            uri: "sip:alice@example.com",
            nc: 1,
        }
        .extra(),
    )
    .await;
    assert_eq!(published.status(), 200, "SHA-256 answer");

    // A nonce from one edge is good at another sharing the key.
    let challenged = register(&mut alice, "alice@example.com", Vec::new()).await;
    let sha256 = challenge_for(&challenged, "SHA-256");
    let mut elsewhere = Ua::udp("alice@example.com", cluster.edge(second)).await;
    let ok = register(&mut elsewhere, "alice@example.com", answer(&sha256, 1)).await;
    assert_eq!(ok.status(), 200, "nonce of edge A answered at edge B");

    // SHA-512-256 for a SUBSCRIBE whose From claims to be Mallory: the
    // watcher is Bob, whose credentials these are.
    let mut mallory = Ua::udp("mallory@example.com", cluster.edge(first)).await;
    let challenged = subscribe(&mut mallory, "alice@example.com", Vec::new()).await;
    let strongest = challenge_for(&challenged, "SHA-512-256");
    let watched = subscribe(
        &mut mallory,
        "alice@example.com",
        DigestAnswer {
            challenge: &strongest,
            user: "bob",
            password: "bob-password",
            method: "SUBSCRIBE",
            uri: "sip:alice@example.com",
            nc: 1,
        }
        .extra(),
    )
    .await;
    assert!(
        (200..300).contains(&watched.status()),
        "{}",
        watched.status()
    );
    let stored = stored_subscriptions(&cluster.redis.url(), "alice@example.com").await;
    assert_eq!(
        stored,
        vec![(
            "bob@example.com".to_string(),
            "sip:mallory@example.com".to_string()
        )]
    );

    // Bob's good credentials do not register Alice's address.
    let challenged = register(&mut alice, "alice@example.com", Vec::new()).await;
    let md5 = challenge_for(&challenged, "MD5");
    let foreign = register(
        &mut alice,
        "alice@example.com",
        DigestAnswer {
            challenge: &md5,
            user: "bob",
            password: "bob-password",
            method: "REGISTER",
            uri: &uri,
            nc: 1,
        }
        .extra(),
    )
    .await;
    assert_eq!(foreign.status(), 403, "Bob's credentials for Alice's AOR");

    // A wrong password: a fresh challenge, not stale.
    let wrong = register(
        &mut alice,
        "alice@example.com",
        DigestAnswer {
            challenge: &md5,
            user: "alice",
            password: "guess",
            method: "REGISTER",
            uri: &uri,
            nc: 7,
        }
        .extra(),
    )
    .await;
    assert_eq!(wrong.status(), 401, "wrong password");
    assert!(digest_challenges(&wrong).iter().all(|c| !c.stale));

    // Credentials computed for another Request-URI: 400 (RFC 2617 §3.2.2.5).
    let moved = register(
        &mut alice,
        "alice@example.com",
        DigestAnswer {
            challenge: &md5,
            user: "alice",
            password: "alice-password",
            method: "REGISTER",
            uri: "sip:elsewhere.example.org",
            nc: 8,
        }
        .extra(),
    )
    .await;
    assert_eq!(moved.status(), 400, "digest uri of another resource");

    // Digest credentials missing mandatory parameters: 400.
    let partial: Extra = vec![(
        HeaderName::Authorization,
        Authorization::Digest(vec![
            ("username".into(), "alice".into()),
            ("realm".into(), REALM.into()),
        ])
        .to_string(),
    )];
    let bad = register(&mut alice, "alice@example.com", partial).await;
    assert_eq!(bad.status(), 400, "incomplete Digest credentials");

    // Credentials for another realm are not ours: challenged again.
    let mut foreign_realm = md5.clone();
    foreign_realm.realm = "other.example.net".into();
    let other = register(
        &mut alice,
        "alice@example.com",
        DigestAnswer {
            challenge: &foreign_realm,
            user: "alice",
            password: "alice-password",
            method: "REGISTER",
            uri: &uri,
            nc: 9,
        }
        .extra(),
    )
    .await;
    assert_eq!(other.status(), 401, "Digest for another realm");
    assert_eq!(www_authenticate(&other).len(), 4);

    // Bearer tokens still work on the same listener.
    let token = cluster.tokens.token("alice@example.com");
    let ok = register(&mut alice, "alice@example.com", bearer(&token)).await;
    assert_eq!(ok.status(), 200, "bearer token on a bearer+digest edge");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_nonces_get_stale_true_and_new_users_need_no_restart() {
    let file = credentials_file();
    let mut cluster = block_in_place(|| Cluster::start(0));
    // Digest only, SHA-256 offered before the default MD5; the realm
    // defaults to the default domain.
    let args = digest_args(
        &file,
        &[
            "--auth-mode",
            "digest",
            "--auth-default-domain",
            REALM,
            "--auth-digest-algorithms",
            "SHA-256,MD5",
            "--auth-digest-nonce-ttl-s",
            "2",
        ],
    );
    let edge = block_in_place(|| cluster.add_edge_with_auth("edge-stale", &args));
    let mut alice = Ua::udp("alice@example.com", cluster.edge(edge)).await;
    let uri = register_uri("alice@example.com");

    let challenged = register(&mut alice, "alice@example.com", Vec::new()).await;
    assert_eq!(challenged.status(), 401);
    assert_eq!(
        www_authenticate(&challenged).len(),
        2,
        "SHA-256 and MD5, no Bearer"
    );
    let algorithms: Vec<String> = digest_challenges(&challenged)
        .into_iter()
        .map(|c| c.algorithm)
        .collect();
    assert_eq!(algorithms, ["SHA-256", "MD5"]);
    let old = challenge_for(&challenged, "SHA-256");
    assert_eq!(old.realm, REALM);

    // Let the nonce age past its 2 s lifetime.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let answer = |challenge: &DigestChallenge, user: &str, password: &str| {
        DigestAnswer {
            challenge,
            user,
            password,
            method: "REGISTER",
            uri: &uri,
            nc: 1,
        }
        .extra()
    };

    // A wrong password on the old nonce learns nothing about staleness.
    let wrong = register(
        &mut alice,
        "alice@example.com",
        answer(&old, "alice", "guess"),
    )
    .await;
    assert_eq!(wrong.status(), 401);
    assert!(digest_challenges(&wrong).iter().all(|c| !c.stale));
    // The right password on the old nonce: stale=true and a new nonce, so
    // the phone retries without asking its user.
    let stale = register(
        &mut alice,
        "alice@example.com",
        answer(&old, "alice", "alice-password"),
    )
    .await;
    assert_eq!(stale.status(), 401);
    let renewed = digest_challenges(&stale);
    assert_eq!(renewed.len(), 2);
    assert!(renewed.iter().all(|c| c.stale && c.nonce != old.nonce));

    // Answering a fresh nonce works. The nonce lives 2 s; on a loaded
    // machine the answer may come later, so the phone's retry is allowed.
    let mut next = stale;
    let mut registered = false;
    for _ in 0..5 {
        let fresh = challenge_for(&next, "SHA-256");
        next = register(
            &mut alice,
            "alice@example.com",
            answer(&fresh, "alice", "alice-password"),
        )
        .await;
        if next.status() == 200 {
            registered = true;
            break;
        }
        assert_eq!(next.status(), 401);
        assert!(digest_challenges(&next).iter().all(|c| c.stale));
    }
    assert!(registered, "a fresh nonce answered at once is accepted");

    // A user added to the credentials file is accepted without a restart.
    let mut carol = Ua::udp("carol@example.com", cluster.edge(edge)).await;
    let carol_uri = register_uri("carol@example.com");
    let challenged = register(&mut carol, "carol@example.com", Vec::new()).await;
    let before = register(
        &mut carol,
        "carol@example.com",
        DigestAnswer {
            challenge: &challenge_for(&challenged, "SHA-256"),
            user: "carol",
            password: "carol-password",
            method: "REGISTER",
            uri: &carol_uri,
            nc: 1,
        }
        .extra(),
    )
    .await;
    assert_eq!(before.status(), 401, "unknown user");
    let mut appended = std::fs::OpenOptions::new()
        .append(true)
        .open(file.path())
        .expect("opening the credentials file");
    writeln!(appended, "carol:carol-password").expect("adding Carol");
    drop(appended);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let challenged = register(&mut carol, "carol@example.com", Vec::new()).await;
        let attempt = register(
            &mut carol,
            "carol@example.com",
            DigestAnswer {
                challenge: &challenge_for(&challenged, "SHA-256"),
                user: "carol",
                password: "carol-password",
                method: "REGISTER",
                uri: &carol_uri,
                nc: 1,
            }
            .extra(),
        )
        .await;
        if attempt.status() == 200 {
            break;
        }
        assert_eq!(attempt.status(), 401);
        assert!(
            Instant::now() < deadline,
            "Carol's credentials were never picked up"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `alice` and `alice@example.com` are the same user: a phone may be set up
/// with either. A clear-text password listed under one spelling serves
/// both; a precomputed HA1 serves the spelling it was computed for, so the
/// file lists one per spelling in use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_short_and_the_full_user_name_are_both_accepted() {
    let mut file = tempfile::NamedTempFile::new().expect("credentials file");
    for user in ["alice", "alice@example.com"] {
        writeln!(
            file,
            "{user}:{REALM}:{}:MD5",
            ha1("MD5", user, REALM, "alice-password")
        )
        .expect("writing");
    }
    writeln!(file, "bob:bob-password").expect("writing");
    writeln!(file, "erin@example.com:erin-password").expect("writing");
    file.flush().expect("flushing");
    let mut cluster = block_in_place(|| Cluster::start(0));
    let args = digest_args(
        &file,
        &["--auth-mode", "digest", "--auth-digest-realm", REALM],
    );
    let edge = block_in_place(|| cluster.add_edge_with_auth("edge-user-names", &args));

    for (aor, user, password) in [
        ("alice@example.com", "alice", "alice-password"),
        ("alice@example.com", "alice@example.com", "alice-password"),
        ("bob@example.com", "bob", "bob-password"),
        ("bob@example.com", "bob@example.com", "bob-password"),
        ("erin@example.com", "erin", "erin-password"),
        ("erin@example.com", "erin@example.com", "erin-password"),
    ] {
        let mut phone = Ua::udp(aor, cluster.edge(edge)).await;
        let uri = register_uri(aor);
        let challenged = register(&mut phone, aor, Vec::new()).await;
        let md5 = challenge_for(&challenged, "MD5");
        let answered = register(
            &mut phone,
            aor,
            DigestAnswer {
                challenge: &md5,
                user,
                password,
                method: "REGISTER",
                uri: &uri,
                nc: 1,
            }
            .extra(),
        )
        .await;
        assert_eq!(answered.status(), 200, "{user} registering {aor}");
    }

    // Either spelling is Alice, and only Alice: not Bob's address.
    let mut caller = Ua::udp("bob@example.com", cluster.edge(edge)).await;
    let uri = register_uri("bob@example.com");
    let challenged = register(&mut caller, "bob@example.com", Vec::new()).await;
    let md5 = challenge_for(&challenged, "MD5");
    let foreign = register(
        &mut caller,
        "bob@example.com",
        DigestAnswer {
            challenge: &md5,
            user: "alice@example.com",
            password: "alice-password",
            method: "REGISTER",
            uri: &uri,
            nc: 1,
        }
        .extra(),
    )
    .await;
    assert_eq!(foreign.status(), 403, "Alice's credentials for Bob's AOR");
    // A user of another domain is not the realm's user of the same name.
    let challenged = register(&mut caller, "bob@example.com", Vec::new()).await;
    let md5 = challenge_for(&challenged, "MD5");
    let other_domain = register(
        &mut caller,
        "bob@example.com",
        DigestAnswer {
            challenge: &md5,
            user: "bob@example.org",
            password: "bob-password",
            method: "REGISTER",
            uri: &uri,
            nc: 1,
        }
        .extra(),
    )
    .await;
    assert_eq!(other_domain.status(), 401, "bob@example.org is unknown");
}
