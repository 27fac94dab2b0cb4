//! Redis losing every key (FLUSHALL, or a restart without persistence)
//! while an edge holds a SUBSCRIBE dialog: the presence service creates a
//! new state epoch, the edge hears of it at its next lease renewal,
//! restores the dialog's subscription record (same dialog, remaining
//! expiry, CSeq as used) and sends the watcher the state as it is now. The
//! watcher never re-subscribes, yet its dialog keeps working: the next
//! PUBLISH reaches it, a refresh is accepted, an unsubscribe ends it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster_tests::cluster::Cluster;
use cluster_tests::free_port;
use cluster_tests::process::{wait_for_tcp, Process};
use cluster_tests::ua::{pidf, Ua, WAIT};
use presence::subscriptions::SubscriptionStatus;
use presence::SubscriptionRecord;
use rpc::presence::v1::presence_client::PresenceClient;
use rpc::presence::v1::{GetPresenceRequest, PresenceState};
use sip::{Request, SubState};
use store::{Backend, Key, Kind, Schedule};

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
const EDGE_ID: &str = "edge-a";
/// Short, so the edge renews (and hears the epoch) every 0.5 s.
const LEASE_MS: u64 = 1500;

#[derive(Clone, Copy, Debug)]
enum Loss {
    /// `FLUSHALL`: the connections survive, the data does not.
    Flush,
    /// The server is killed and started again empty: connections drop too.
    Restart,
}

fn add_edge(cluster: &mut Cluster) {
    let port = free_port();
    let mut args = vec![
        "--udp".to_string(),
        format!("127.0.0.1:{port}"),
        "--tcp".into(),
        format!("127.0.0.1:{port}"),
        "--edge-id".into(),
        EDGE_ID.into(),
        "--presence-url".into(),
        cluster.presence_url(),
        "--registrar-url".into(),
        cluster.registrar_url(),
        "--redis-url".into(),
        cluster.redis.url(),
        "--rpc-timeout-ms".into(),
        "1000".into(),
        "--lease-ttl-ms".into(),
        LEASE_MS.to_string(),
    ];
    args.extend(cluster.tokens.edge_args());
    let process = Process::spawn(EDGE_ID, "edge", &args, &[]);
    wait_for_tcp(port, Duration::from_secs(60));
    cluster.edges.push(process);
    cluster.edge_ports.push(port);
}

/// (Call-ID, From tag, To tag) of a NOTIFY.
fn dialog_of(notify: &Request) -> (String, String, String) {
    let h = notify.headers();
    (
        h.call_id().expect("Call-ID").to_string(),
        h.from().expect("From").tag().expect("From tag").to_string(),
        h.to().expect("To").tag().expect("To tag").to_string(),
    )
}

fn cseq(notify: &Request) -> u32 {
    notify.headers().cseq().expect("CSeq").seq
}

fn body(notify: &Request) -> String {
    String::from_utf8_lossy(notify.body()).into_owned()
}

fn sub_state(notify: &Request) -> (SubState, Option<u32>) {
    let state = notify
        .headers()
        .subscription_state()
        .expect("valid Subscription-State")
        .expect("Subscription-State");
    (state.state, state.expires)
}

/// Runs a read, retrying while Redis is unreachable (the test's own
/// connection reconnects by itself after a restart).
async fn read<T, F>(what: &str, mut attempt: impl FnMut() -> F) -> T
where
    F: std::future::Future<Output = Result<T, store::StoreError>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(e) if Instant::now() < deadline => {
                eprintln!("reading {what}: {e}; trying again");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("reading {what}: {e}"),
        }
    }
}

async fn epoch(backend: &dyn Backend) -> Option<String> {
    let key = Key::new(Kind::Epoch, "cluster");
    read("the epoch", || backend.get_record(&key))
        .await
        .map(|r| String::from_utf8_lossy(&r.value).into_owned())
}

async fn subscription_record(backend: &dyn Backend, dialog_id: &str) -> Option<SubscriptionRecord> {
    let key = Key::new(Kind::Subscriptions, ALICE);
    read("the subscription record", || {
        backend.map_get(&key, dialog_id)
    })
    .await
    .map(|raw| SubscriptionRecord::decode(ALICE, dialog_id, &raw).expect("a subscription record"))
}

/// Alice's composed state as the presence service has it now.
async fn composed(url: &str) -> PresenceState {
    let channel = tonic::transport::Channel::from_shared(url.to_string())
        .expect("presence URL")
        .tcp_nodelay(true)
        .connect_lazy();
    PresenceClient::new(channel)
        .get_presence(GetPresenceRequest {
            presentity: ALICE.into(),
        })
        .await
        .expect("GetPresence")
        .into_inner()
}

/// A NOTIFY of the presence package carrying exactly `state`'s document.
fn assert_carries(notify: &Request, state: &PresenceState) {
    let headers = notify.headers();
    let event = headers.event().expect("valid Event").expect("Event");
    assert_eq!(event.package, "presence");
    let media = headers
        .content_type()
        .expect("valid Content-Type")
        .expect("Content-Type");
    assert!(
        media.matches("application/pidf+xml"),
        "Content-Type {media:?}"
    );
    assert_eq!(
        body(notify),
        String::from_utf8_lossy(&state.pidf),
        "the NOTIFY carries the composed document"
    );
}

async fn wait_for_epoch(backend: &dyn Backend) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(epoch) = epoch(backend).await {
            return epoch;
        }
        assert!(Instant::now() < deadline, "no epoch after the edge started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn watcher_keeps_its_dialog_through_a_loss_of_state(loss: Loss) {
    let mut cluster = Cluster::start(0);
    add_edge(&mut cluster);
    let backend: Arc<dyn Backend> = store::open(&cluster.redis.url())
        .await
        .expect("connecting to Redis");
    let alice_token = cluster.tokens.token(ALICE);
    let bob_token = cluster.tokens.token(BOB);
    let mut alice = Ua::udp(ALICE, cluster.edge(0)).await;
    let mut bob = Ua::udp(BOB, cluster.edge(0)).await;

    let published = alice
        .publish(
            &alice_token,
            None,
            Some(&pidf(ALICE, "open", "before the loss")),
            600,
        )
        .await;
    assert_eq!(published.status(), 200);
    let old_etag = published
        .headers()
        .sip_etag()
        .expect("SIP-ETag")
        .to_string();

    let (response, dialog) = bob.subscribe(ALICE, &bob_token, 600).await;
    assert_eq!(response.status(), 200);
    let mut dialog = dialog.expect("a dialog");
    let initial = bob.next_notify(WAIT).await.expect("initial NOTIFY");
    let identity = dialog_of(&initial);
    assert_eq!(
        identity,
        (
            dialog.call_id.clone(),
            dialog.remote_tag.clone(),
            dialog.local_tag.clone()
        )
    );
    assert!(body(&initial).contains("before the loss"));
    let before = composed(&cluster.presence_url()).await;
    assert_eq!(before.note, "before the loss");
    assert_carries(&initial, &before);
    let first_cseq = cseq(&initial);
    let dialog_id = dialog.remote_tag.clone();
    let stored = subscription_record(backend.as_ref(), &dialog_id)
        .await
        .expect("the subscription record");
    let expires_at_ms = stored.expires_at_ms;
    let old_epoch = wait_for_epoch(backend.as_ref()).await;

    // Every key is lost.
    match loss {
        Loss::Flush => {
            let reply = cluster.redis.command("FLUSHALL").expect("FLUSHALL");
            assert!(reply.starts_with("+OK"), "FLUSHALL answered {reply}");
        }
        Loss::Restart => cluster.redis.restart().expect("restarting Redis"),
    }
    let lost_at = Instant::now();
    assert_eq!(
        subscription_record(backend.as_ref(), &dialog_id).await,
        None,
        "the record is gone with the data"
    );

    // At its next renewal the edge learns of the new epoch, restores the
    // record and sends the state as it is now: nothing is published any
    // more, so a neutral closed document, in the same dialog.
    let reset = bob
        .next_notify(Duration::from_secs(15))
        .await
        .expect("a NOTIFY after the loss of state");
    let restored_in = lost_at.elapsed();
    assert_eq!(dialog_of(&reset), identity, "same dialog");
    assert!(cseq(&reset) > first_cseq);
    let (state, expires) = sub_state(&reset);
    assert_eq!(state, SubState::Active);
    assert!(
        expires.is_some_and(|e| (590..=600).contains(&e)),
        "remaining expiry kept: {expires:?}"
    );
    assert!(
        body(&reset).contains("<basic>closed</basic>"),
        "{}",
        body(&reset)
    );
    assert!(
        !body(&reset).contains("before the loss"),
        "{}",
        body(&reset)
    );
    // Exactly what the service has now: nothing published (version 0).
    let lost = composed(&cluster.presence_url()).await;
    assert_eq!(lost.version, 0);
    assert_carries(&reset, &lost);

    let new_epoch = epoch(backend.as_ref()).await.expect("a new epoch");
    assert_ne!(new_epoch, old_epoch);
    let restored = subscription_record(backend.as_ref(), &dialog_id)
        .await
        .expect("the subscription record is back");
    let d = &restored.dialog;
    assert_eq!(restored.presentity, ALICE);
    assert_eq!(restored.status, SubscriptionStatus::Active);
    assert_eq!(d.id, dialog_id);
    assert_eq!(d.call_id, dialog.call_id);
    assert_eq!(d.local_tag, dialog.remote_tag);
    assert_eq!(d.remote_tag, dialog.local_tag);
    assert_eq!(d.remote_uri, stored.dialog.remote_uri);
    assert_eq!(d.remote_target, stored.dialog.remote_target);
    assert_eq!(d.remote_addr, stored.dialog.remote_addr);
    assert_eq!(d.transport, "udp");
    assert_eq!(d.watcher, BOB);
    assert_eq!(d.edge_id, EDGE_ID);
    // The CSeq the edge had used when it restored the record.
    assert_eq!(d.notify_cseq, first_cseq);
    let restored_expiry = restored.expires_at_ms;
    assert!(
        restored_expiry.abs_diff(expires_at_ms) < 1000,
        "expiry kept: {expires_at_ms} then {restored_expiry}"
    );
    // Expiry and ownership are back in place too.
    let member = format!("{ALICE}\n{dialog_id}");
    let due = read("the schedule", || {
        backend.due(Schedule::Subscriptions, u64::MAX, 100)
    })
    .await;
    assert_eq!(due, vec![(member.clone(), restored_expiry)]);
    let owned = read("the edge's dialogs", || {
        presence::ownership::owned(backend.as_ref(), EDGE_ID)
    })
    .await;
    assert_eq!(owned, vec![member]);

    // Alice's refresh names a tag Redis no longer has: 412, and she
    // publishes in full (RFC 3903 §4.1).
    let refresh = alice
        .publish(&alice_token, Some(&old_etag), None, 600)
        .await;
    assert_eq!(refresh.status(), 412);
    let republished = alice
        .publish(
            &alice_token,
            None,
            Some(&pidf(ALICE, "open", "after the loss")),
            600,
        )
        .await;
    assert_eq!(republished.status(), 200);
    let change = bob
        .next_notify(WAIT)
        .await
        .expect("a NOTIFY of the new state, without re-subscribing");
    assert_eq!(dialog_of(&change), identity);
    assert!(cseq(&change) > cseq(&reset));
    assert!(body(&change).contains("after the loss"));
    assert!(body(&change).contains("<basic>open</basic>"));
    let after = composed(&cluster.presence_url()).await;
    assert_eq!(after.note, "after the loss");
    assert!(after.version > before.version, "versions still go forward");
    assert_carries(&change, &after);

    // The restored record serves a refresh (a lost one would answer 481).
    let refreshed = bob.resubscribe(&mut dialog, &bob_token, 600).await;
    assert_eq!(refreshed.status(), 200);
    let after_refresh = bob.next_notify(WAIT).await.expect("NOTIFY after a refresh");
    assert_eq!(dialog_of(&after_refresh), identity);
    assert!(cseq(&after_refresh) > cseq(&change));
    assert_carries(&after_refresh, &after);
    assert!(
        bob.next_notify(Duration::from_secs(1)).await.is_none(),
        "one NOTIFY per event"
    );

    // And an unsubscribe ends it.
    let ended = bob.resubscribe(&mut dialog, &bob_token, 0).await;
    assert_eq!(ended.status(), 200);
    let last = bob.next_notify(WAIT).await.expect("final NOTIFY");
    assert_eq!(sub_state(&last).0, SubState::Terminated);
    assert!(cseq(&last) > cseq(&after_refresh));
    assert_eq!(
        subscription_record(backend.as_ref(), &dialog_id).await,
        None
    );

    eprintln!(
        "figures: {loss:?}: the watcher had the state as it is after the loss {restored_in:?} \
         after it (lease {LEASE_MS} ms, renewed every {} ms)",
        LEASE_MS / 3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushall_the_edge_restores_its_dialog_and_the_watcher_keeps_receiving() {
    watcher_keeps_its_dialog_through_a_loss_of_state(Loss::Flush).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_the_edge_restores_its_dialog_and_the_watcher_keeps_receiving() {
    watcher_keeps_its_dialog_through_a_loss_of_state(Loss::Restart).await;
}
