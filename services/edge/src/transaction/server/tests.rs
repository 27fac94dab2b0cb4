use super::*;
use crate::transport::Protocol;
use std::net::{Ipv4Addr, SocketAddr};

/// A transaction key of `id` and `method` from one sent-by, CSeq 1.
pub(in crate::transaction) fn key(id: &str, method: &str) -> TransactionKey {
    TransactionKey {
        id: id.into(),
        method: method.into(),
        sent_by: "192.0.2.1:5060".into(),
        cseq: format!("1 {method}"),
    }
}

fn udp() -> Source {
    Source {
        protocol: Protocol::Udp,
        remote: SocketAddr::from((Ipv4Addr::LOCALHOST, 5060)),
    }
}

#[test]
fn retransmissions_are_absorbed_then_answered_from_cache() {
    let table = ServerTransactions::new(Duration::from_millis(500));
    let k = key("z9hG4bK1", "SUBSCRIBE");
    assert!(matches!(table.begin(&k), Begin::New));
    assert!(matches!(table.begin(&k), Begin::Retransmission(None)));
    table.complete(&k, Bytes::from_static(b"SIP/2.0 200 OK\r\n\r\n"), udp());
    match table.begin(&k) {
        Begin::Retransmission(Some((bytes, to))) => {
            assert_eq!(&bytes[..], b"SIP/2.0 200 OK\r\n\r\n");
            assert_eq!(to, udp());
        }
        _ => panic!("a completed transaction answers from its cache"),
    }
    assert_eq!(table.len(), 1);
}

#[test]
fn a_branch_reused_with_another_cseq_is_a_new_transaction() {
    let table = ServerTransactions::new(Duration::from_millis(500));
    let first = key("z9hG4bKloop", "REGISTER");
    assert!(matches!(table.begin(&first), Begin::New));
    table.complete(&first, Bytes::from_static(b"CSeq: 1 REGISTER"), udp());
    // Same branch, next CSeq number: not a retransmission.
    let next = TransactionKey {
        cseq: "2 REGISTER".into(),
        ..first.clone()
    };
    assert!(matches!(table.begin(&next), Begin::New));
    // Same number, another CSeq method: not a retransmission either.
    let other = TransactionKey {
        cseq: "1 OPTIONS".into(),
        ..first.clone()
    };
    assert!(matches!(table.begin(&other), Begin::New));
    // The real retransmission still gets its own cached answer.
    match table.begin(&first) {
        Begin::Retransmission(Some((bytes, _))) => assert_eq!(&bytes[..], b"CSeq: 1 REGISTER"),
        _ => panic!("the first request's retransmission is answered from the cache"),
    }
    table.complete(&next, Bytes::from_static(b"CSeq: 2 REGISTER"), udp());
    match table.begin(&next) {
        Begin::Retransmission(Some((bytes, _))) => assert_eq!(&bytes[..], b"CSeq: 2 REGISTER"),
        _ => panic!("the second request's retransmission is answered from its cache"),
    }
    assert_eq!(table.len(), 3);
}

#[test]
fn reliable_transports_keep_nothing_after_the_answer() {
    let table = ServerTransactions::new(Duration::from_millis(500));
    let k = key("z9hG4bK2", "PUBLISH");
    assert!(matches!(table.begin(&k), Begin::New));
    let tcp = Source {
        protocol: Protocol::Tcp,
        ..udp()
    };
    table.complete(&k, Bytes::from_static(b"x"), tcp);
    assert!(table.is_empty());
}

#[test]
fn a_cancel_matches_the_request_of_its_branch_only() {
    let table = ServerTransactions::new(Duration::from_millis(500));
    let invite = key("z9hG4bK3", "INVITE");
    assert!(matches!(table.begin(&invite), Begin::New));
    let cancel = key("z9hG4bK3", "CANCEL");
    assert!(matches!(table.begin(&cancel), Begin::New));
    assert!(table.has_cancelled_request(&cancel));
    let stray = key("z9hG4bK4", "CANCEL");
    assert!(matches!(table.begin(&stray), Begin::New));
    assert!(!table.has_cancelled_request(&stray));
    assert_eq!(table.len(), 3);
    table.forget(&cancel);
    assert_eq!(table.len(), 2);
}

#[test]
fn a_full_table_refuses_new_transactions_but_still_matches_old_ones() {
    let table = ServerTransactions::with_capacity(Duration::from_millis(500), 2);
    assert!(matches!(table.begin(&key("a", "OPTIONS")), Begin::New));
    assert!(matches!(table.begin(&key("b", "OPTIONS")), Begin::New));
    assert!(matches!(
        table.begin(&key("c", "OPTIONS")),
        Begin::Overloaded
    ));
    assert!(matches!(
        table.begin(&key("a", "OPTIONS")),
        Begin::Retransmission(None)
    ));
    assert_eq!(table.len(), 2);
}

#[test]
fn purge_drops_completed_transactions_after_timer_j() {
    let table = ServerTransactions::new(Duration::from_millis(1));
    let k = key("z9hG4bK5", "REGISTER");
    assert!(matches!(table.begin(&k), Begin::New));
    table.complete(&k, Bytes::from_static(b"x"), udp());
    std::thread::sleep(Duration::from_millis(80));
    table.purge();
    assert!(table.is_empty());
    assert!(matches!(table.begin(&k), Begin::New));
}

#[test]
fn abandoned_and_answered_transactions_are_counted_apart() {
    let table = ServerTransactions::new(Duration::from_millis(500));
    let a = key("z9hG4bKa", "PUBLISH");
    let b = key("z9hG4bKb", "PUBLISH");
    assert!(matches!(table.begin(&a), Begin::New));
    assert!(matches!(table.begin(&b), Begin::New));
    assert_eq!(table.in_progress(), 2);
    table.complete(&a, Bytes::from_static(b"x"), udp());
    assert_eq!(table.in_progress(), 1);
    // A second answer to the same transaction changes no count.
    table.complete(&a, Bytes::from_static(b"y"), udp());
    assert_eq!(table.in_progress(), 1);
    table.forget(&b);
    assert_eq!(table.in_progress(), 0);
    assert_eq!(table.len(), 1);
}

#[test]
fn many_transactions_of_one_branch_and_many_branches_stay_apart() {
    let table = ServerTransactions::new(Duration::from_millis(500));
    for n in 0..2_000 {
        let k = TransactionKey {
            cseq: format!("{} REGISTER", n % 7),
            ..key(&format!("z9hG4bK{}", n / 7), "REGISTER")
        };
        assert!(matches!(table.begin(&k), Begin::New), "{n}");
        table.complete(&k, Bytes::from(format!("answer {n}")), udp());
    }
    assert_eq!(table.len(), 2_000);
    for n in (0..2_000).step_by(13) {
        let k = TransactionKey {
            cseq: format!("{} REGISTER", n % 7),
            ..key(&format!("z9hG4bK{}", n / 7), "REGISTER")
        };
        match table.begin(&k) {
            Begin::Retransmission(Some((bytes, _))) => {
                assert_eq!(bytes, Bytes::from(format!("answer {n}")))
            }
            _ => panic!("transaction {n} answers from its own cache"),
        }
    }
}

#[test]
fn a_full_size_table_spreads_transactions_over_its_shards_and_counts_them_all() {
    let table = ServerTransactions::new(Duration::from_millis(10));
    assert_eq!(table.shards.len(), SHARDS);
    let keys: Vec<_> = (0..2_000)
        .map(|n| key(&format!("z9hG4bK{n}"), "PUBLISH"))
        .collect();
    for k in &keys {
        assert!(matches!(table.begin(k), Begin::New));
    }
    assert_eq!(table.len(), 2_000);
    assert_eq!(table.in_progress(), 2_000);
    for shard in table.shards.iter() {
        assert!(!locks::lock(shard).entries.is_empty());
    }
    for k in &keys[..1_000] {
        table.complete(k, Bytes::from_static(b"SIP/2.0 200 OK\r\n\r\n"), udp());
    }
    assert_eq!(table.in_progress(), 1_000);
    assert!(matches!(
        table.begin(&keys[10]),
        Begin::Retransmission(Some(_))
    ));
    assert!(matches!(
        table.begin(&keys[1_500]),
        Begin::Retransmission(None)
    ));
    // Timer J is 640 ms at T1 = 10 ms; unanswered ones stay twice as long.
    std::thread::sleep(Duration::from_millis(800));
    table.purge();
    assert_eq!(table.len(), 1_000);
    std::thread::sleep(Duration::from_millis(600));
    table.purge();
    assert!(table.is_empty());
    assert_eq!(table.in_progress(), 0);
}
