//! Digest authentication: published test vectors, round trips, stale nonces and replays.

use std::sync::Arc;
use std::time::Duration;

use auth::digest::{ha1, response, DigestAlgorithm, DigestAuthenticator, DigestConfig, Ha1File};
use auth::{AuthError, AuthMethod};

#[test]
fn rfc_2617_section_3_5_example() {
    let ha1 = ha1(
        DigestAlgorithm::Md5,
        "Mufasa",
        "testrealm@host.com",
        "Circle Of Life",
    );
    assert_eq!(ha1, "939e7578ed9e3c518a452acee763bce9");
    let response = response(
        DigestAlgorithm::Md5,
        &ha1,
        "dcd98b7102dd2f0e8b11d0f600bfb0c093",
        "00000001",
        "0a4f113b",
        "auth",
        "GET",
        "/dir/index.html",
    );
    assert_eq!(response, "6629fae49393a05397450978507c4ef1");
}

#[test]
fn rfc_7616_section_3_9_1_example() {
    let expected = [
        (DigestAlgorithm::Md5, "8ca523f5e9506fed4657c9700eebdbec"),
        (
            DigestAlgorithm::Sha256,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
        ),
    ];
    for (alg, want) in expected {
        let ha1 = ha1(alg, "Mufasa", "http-auth@example.org", "Circle of Life");
        let got = response(
            alg,
            &ha1,
            "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            "00000001",
            "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            "auth",
            "GET",
            "/dir/index.html",
        );
        assert_eq!(got, want, "{alg:?}");
    }
}

const CREDENTIALS: &str = "\
# precomputed HA1 values and a clear-text development password
alice:example.com:6ea4a0ef0d6d6e7d7a0e8d3c36d1bde8
bob:example.com:placeholder-replaced-below
carol:secret
";

fn authenticator(ttl: u64, algorithms: Vec<DigestAlgorithm>) -> DigestAuthenticator {
    let alice_md5 = ha1(DigestAlgorithm::Md5, "alice", "example.com", "wonderland");
    let bob_sha256 = ha1(DigestAlgorithm::Sha256, "bob", "example.com", "builder");
    let bob_sha512 = ha1(DigestAlgorithm::Sha512_256, "bob", "example.com", "builder");
    let text = CREDENTIALS
        .replace("6ea4a0ef0d6d6e7d7a0e8d3c36d1bde8", &alice_md5)
        .replace(
            "bob:example.com:placeholder-replaced-below",
            &format!("bob:example.com:{bob_sha256}\nbob:example.com:{bob_sha512}:SHA-512-256"),
        );
    let file = Ha1File::parse(&text).unwrap();
    assert_eq!(file.len(), 3);
    DigestAuthenticator::new(
        DigestConfig {
            realm: "example.com".to_owned(),
            algorithms,
            nonce_ttl_secs: ttl,
            secret: b"cluster-shared-secret".to_vec(),
        },
        Arc::new(file),
    )
}

/// What a SIP phone would send in reply to a challenge.
fn client_params(
    challenge: &auth::digest::DigestChallenge,
    user: &str,
    password: &str,
    nc: u32,
    method: &str,
) -> Vec<(String, String)> {
    let uri = "sip:example.com";
    let nc = format!("{nc:08x}");
    let cnonce = "0a4f113b";
    let ha1 = ha1(challenge.algorithm, user, &challenge.realm, password);
    let response = response(
        challenge.algorithm,
        &ha1,
        &challenge.nonce,
        &nc,
        cnonce,
        "auth",
        method,
        uri,
    );
    [
        ("username", user),
        ("realm", challenge.realm.as_str()),
        ("nonce", challenge.nonce.as_str()),
        ("uri", uri),
        ("response", response.as_str()),
        ("algorithm", challenge.algorithm.name()),
        ("qop", "auth"),
        ("nc", nc.as_str()),
        ("cnonce", cnonce),
        ("opaque", challenge.opaque.as_str()),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_owned(), v.to_owned()))
    .collect()
}

#[test]
fn round_trip_for_every_algorithm() {
    let digest = authenticator(
        300,
        vec![
            DigestAlgorithm::Sha512_256,
            DigestAlgorithm::Sha256,
            DigestAlgorithm::Md5,
        ],
    );
    let challenges = digest.challenges(false);
    assert_eq!(challenges.len(), 3);
    assert!(challenges
        .iter()
        .all(|c| c.nonce == challenges[0].nonce && c.qop == "auth" && !c.stale));
    // The challenges share one nonce, so the nonce count keeps rising across the requests below.
    let mut nc = 0;
    for challenge in &challenges {
        let (user, password) = match challenge.algorithm {
            DigestAlgorithm::Md5 => ("alice", "wonderland"),
            _ => ("bob", "builder"),
        };
        nc += 1;
        let identity = digest
            .verify(
                "REGISTER",
                &client_params(challenge, user, password, nc, "REGISTER"),
            )
            .unwrap_or_else(|e| panic!("{:?}: {e}", challenge.algorithm));
        assert_eq!(identity.aor, format!("{user}@example.com"));
        assert_eq!(identity.method, AuthMethod::Digest);
        // Clear-text development credentials work for any algorithm.
        nc += 1;
        let identity = digest
            .verify(
                "REGISTER",
                &client_params(challenge, "carol", "secret", nc, "REGISTER"),
            )
            .unwrap();
        assert_eq!(identity.aor, "carol@example.com");
    }
}

#[test]
fn wrong_password_method_or_realm_is_refused() {
    let digest = authenticator(300, vec![DigestAlgorithm::Md5]);
    let challenge = &digest.challenges(false)[0];
    let wrong = client_params(challenge, "alice", "guess", 1, "REGISTER");
    let error = digest.verify("REGISTER", &wrong).unwrap_err();
    assert!(matches!(error, AuthError::InvalidCredentials(_)));
    assert_eq!(error.sip_status(), 401);
    // The response covers the method.
    let params = client_params(challenge, "alice", "wonderland", 1, "REGISTER");
    assert!(digest.verify("SUBSCRIBE", &params).is_err());
    // Unknown user.
    let params = client_params(challenge, "mallory", "x", 1, "REGISTER");
    assert!(matches!(
        digest.verify("REGISTER", &params),
        Err(AuthError::InvalidCredentials(_))
    ));
    // Another realm.
    let mut params = client_params(challenge, "alice", "wonderland", 2, "REGISTER");
    params[1].1 = "evil.example".to_owned();
    assert!(matches!(
        digest.verify("REGISTER", &params),
        Err(AuthError::InvalidCredentials(_))
    ));
}

#[test]
fn nonce_from_another_secret_or_tampered_is_refused() {
    let digest = authenticator(300, vec![DigestAlgorithm::Md5]);
    let other = DigestAuthenticator::new(
        DigestConfig {
            realm: "example.com".to_owned(),
            algorithms: vec![DigestAlgorithm::Md5],
            nonce_ttl_secs: 300,
            secret: b"another-secret".to_vec(),
        },
        Arc::new(Ha1File::parse("alice:wonderland").unwrap()),
    );
    let foreign = &other.challenges(false)[0];
    let params = client_params(foreign, "alice", "wonderland", 1, "REGISTER");
    assert!(matches!(
        digest.verify("REGISTER", &params),
        Err(AuthError::InvalidCredentials(_))
    ));

    let mut challenge = digest.challenges(false)[0].clone();
    // Flip one character of the MAC part (the nonce starts with the mostly-zero timestamp).
    let last = challenge.nonce.pop().unwrap();
    challenge.nonce.push(if last == 'A' { 'B' } else { 'A' });
    let params = client_params(&challenge, "alice", "wonderland", 1, "REGISTER");
    assert!(matches!(
        digest.verify("REGISTER", &params),
        Err(AuthError::InvalidCredentials(_))
    ));
}

#[test]
fn replayed_nonce_count_is_refused() {
    let digest = authenticator(300, vec![DigestAlgorithm::Sha256]);
    let challenge = &digest.challenges(false)[0];
    let first = client_params(challenge, "bob", "builder", 1, "REGISTER");
    digest.verify("REGISTER", &first).unwrap();
    let error = digest.verify("REGISTER", &first).unwrap_err();
    assert_eq!(
        error,
        AuthError::InvalidCredentials("nonce count replayed".to_owned())
    );
    // Counting on is fine; going back is not.
    digest
        .verify(
            "REGISTER",
            &client_params(challenge, "bob", "builder", 2, "REGISTER"),
        )
        .unwrap();
    digest
        .verify(
            "REGISTER",
            &client_params(challenge, "bob", "builder", 5, "REGISTER"),
        )
        .unwrap();
    assert!(digest
        .verify(
            "REGISTER",
            &client_params(challenge, "bob", "builder", 4, "REGISTER")
        )
        .is_err());
}

#[test]
fn replay_tracking_is_bounded() {
    let digest = authenticator(300, vec![DigestAlgorithm::Md5]).with_replay_capacity(4);
    let challenges: Vec<_> = (0..10)
        .map(|_| digest.challenges(false)[0].clone())
        .collect();
    for challenge in &challenges {
        digest
            .verify(
                "REGISTER",
                &client_params(challenge, "alice", "wonderland", 1, "REGISTER"),
            )
            .unwrap();
    }
    // The most recent nonces are still tracked.
    let last = challenges.last().unwrap();
    assert!(digest
        .verify(
            "REGISTER",
            &client_params(last, "alice", "wonderland", 1, "REGISTER")
        )
        .is_err());
}

#[test]
fn expired_nonce_is_stale_only_for_the_right_password() {
    let digest = authenticator(1, vec![DigestAlgorithm::Md5]);
    let challenge = digest.challenges(false)[0].clone();
    std::thread::sleep(Duration::from_millis(2100));
    let right = client_params(&challenge, "alice", "wonderland", 1, "REGISTER");
    let error = digest.verify("REGISTER", &right).unwrap_err();
    assert_eq!(error, AuthError::Stale);
    assert_eq!(error.sip_status(), 401);
    let wrong = client_params(&challenge, "alice", "guess", 1, "REGISTER");
    assert!(matches!(
        digest.verify("REGISTER", &wrong),
        Err(AuthError::InvalidCredentials(_))
    ));
    let fresh = digest.challenges(true);
    assert!(fresh[0].stale);
    assert!(fresh[0].header_value().ends_with(", stale=true"));
}

#[test]
fn malformed_parameters() {
    let digest = authenticator(300, vec![DigestAlgorithm::Md5]);
    let challenge = &digest.challenges(false)[0];
    let complete = client_params(challenge, "alice", "wonderland", 1, "REGISTER");
    for missing in [
        "username", "nonce", "uri", "response", "qop", "nc", "cnonce",
    ] {
        let params: Vec<_> = complete
            .iter()
            .filter(|(n, _)| n != missing)
            .cloned()
            .collect();
        assert!(
            matches!(
                digest.verify("REGISTER", &params),
                Err(AuthError::Malformed(_))
            ),
            "without {missing}"
        );
    }
    let mut bad_nc = complete.clone();
    bad_nc[7].1 = "1".to_owned();
    assert!(matches!(
        digest.verify("REGISTER", &bad_nc),
        Err(AuthError::Malformed(_))
    ));
    // Upper-case parameter names are accepted.
    let shouted: Vec<_> = complete
        .iter()
        .map(|(n, v)| (n.to_uppercase(), v.clone()))
        .collect();
    digest.verify("REGISTER", &shouted).unwrap();
    // An algorithm that was not offered.
    let mut sha = complete;
    sha[5].1 = "SHA-256".to_owned();
    assert!(matches!(
        digest.verify("REGISTER", &sha),
        Err(AuthError::InvalidCredentials(_))
    ));
}

#[test]
fn user_names_with_a_domain_keep_it() {
    let file = Ha1File::parse("alice@Other.Example:pw").unwrap();
    let digest = DigestAuthenticator::new(
        DigestConfig {
            realm: "example.com".to_owned(),
            algorithms: vec![DigestAlgorithm::Md5],
            nonce_ttl_secs: 60,
            secret: b"k".to_vec(),
        },
        Arc::new(file),
    );
    let challenge = &digest.challenges(false)[0];
    let identity = digest
        .verify(
            "REGISTER",
            &client_params(challenge, "alice@Other.Example", "pw", 1, "REGISTER"),
        )
        .unwrap();
    assert_eq!(identity.aor, "alice@other.example");
}

#[test]
fn credentials_file_format() {
    assert!(Ha1File::parse("alice:example.com:zz").is_err());
    assert!(Ha1File::parse("alice:example.com:0123456789abcdef0123456789abcdef:SHA-1").is_err());
    assert!(Ha1File::parse("alice:example.com:0123456789abcdef0123456789abcdef:SHA-256").is_err());
    assert!(Ha1File::parse("just-a-name").is_err());
    let file =
        Ha1File::parse("\n# comment\n  \nalice:example.com:0123456789ABCDEF0123456789abcdef\n")
            .unwrap();
    use auth::digest::CredentialSource;
    assert_eq!(
        file.ha1("alice", "example.com", DigestAlgorithm::Md5)
            .as_deref(),
        Some("0123456789abcdef0123456789abcdef")
    );
    assert_eq!(
        file.ha1("alice", "example.com", DigestAlgorithm::Sha256),
        None
    );
    assert_eq!(file.ha1("alice", "other.com", DigestAlgorithm::Md5), None);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users");
    std::fs::write(&path, "carol:secret\n").unwrap();
    assert!(!Ha1File::load(&path).unwrap().is_empty());
    assert!(Ha1File::load(&dir.path().join("absent")).is_err());
}

#[test]
fn challenge_header_value() {
    let digest = authenticator(300, vec![DigestAlgorithm::Sha256]);
    let challenge = &digest.challenges(false)[0];
    let value = challenge.header_value();
    assert!(value.starts_with("Digest realm=\"example.com\", nonce=\""));
    assert!(value.contains(", algorithm=SHA-256, qop=\"auth\""));
    assert!(!value.contains("stale"));
}
