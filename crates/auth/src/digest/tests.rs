use super::*;

fn file() -> Ha1File {
    let alice = ha1(DigestAlgorithm::Md5, "alice", "example.com", "a");
    let alice_full = ha1(
        DigestAlgorithm::Md5,
        "alice@example.com",
        "example.com",
        "a",
    );
    Ha1File::parse(&format!(
        "alice:example.com:{alice}\nalice@example.com:example.com:{alice_full}\n\
         bob:b\ncarol@example.com:c\n"
    ))
    .unwrap()
}

#[test]
fn both_spellings_of_a_user_find_their_ha1() {
    let file = file();
    let md5 = DigestAlgorithm::Md5;
    for (user, password) in [
        ("alice", "a"),
        ("alice@example.com", "a"),
        ("bob", "b"),
        ("bob@example.com", "b"),
        ("bob@EXAMPLE.com", "b"),
        ("carol", "c"),
        ("carol@example.com", "c"),
    ] {
        assert_eq!(
            file.ha1(user, "example.com", md5),
            Some(ha1(md5, user, "example.com", password)),
            "{user}"
        );
    }
}

#[test]
fn another_domain_is_another_user() {
    let file = file();
    assert_eq!(
        file.ha1("bob@example.org", "example.com", DigestAlgorithm::Md5),
        None
    );
    assert_eq!(file.ha1("dave", "example.com", DigestAlgorithm::Md5), None);
    assert_eq!(
        file.ha1("@example.com", "example.com", DigestAlgorithm::Md5),
        None
    );
}
