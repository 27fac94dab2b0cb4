//! Who may watch whom, over real SIP and a real Redis: the presentity's
//! rules (allow, block, polite-block, confirm), pending subscriptions
//! approved or rejected over gRPC, and the presentity's own watcher
//! information (`presence.winfo`, RFC 3857/3858) with full and partial
//! documents.

use std::net::SocketAddr;
use std::time::Duration;

use cluster_tests::cluster::{Cluster, Node, Tokens};
use cluster_tests::ua::{body_text, pidf, sub_state, Ua, WAIT};
use pidf::watcherinfo::{DocState, WatcherEvent, WatcherInfo, WatcherStatus};
use rpc::presence::v1::presence_client::PresenceClient;
use rpc::presence::v1::{
    DecideWatcherRequest, GetRulesRequest, ListWatchersRequest, Rules, SetRulesRequest,
};
use sip::{Request, SubState};
use tonic::transport::Channel;

/// How long a watcher that must hear nothing is listened to.
const QUIET: Duration = Duration::from_millis(1500);

fn content_type(request: &Request) -> Option<String> {
    request
        .headers()
        .content_type()
        .expect("Content-Type parses")
        .map(|t| t.essence().to_string())
}

fn winfo(request: &Request) -> WatcherInfo {
    assert_eq!(
        content_type(request).as_deref(),
        Some("application/watcherinfo+xml")
    );
    WatcherInfo::parse(request.body()).expect("a valid watcherinfo document")
}

/// (watcher URI, status, event) of every watcher in the document.
fn watchers_of(doc: &WatcherInfo) -> Vec<(String, WatcherStatus, WatcherEvent)> {
    let mut all: Vec<_> = doc
        .lists
        .iter()
        .flat_map(|l| l.watchers.iter())
        .map(|w| (w.uri.clone(), w.status, w.event))
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

async fn presence_client(cluster: &Cluster) -> PresenceClient<Channel> {
    PresenceClient::connect(cluster.presence_url())
        .await
        .expect("presence gRPC")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmed_watcher_waits_pending_until_approved_and_winfo_shows_it() {
    let cluster = Cluster::start(1);
    let grpc = PresenceClient::connect(cluster.presence_url())
        .await
        .expect("presence gRPC");
    confirm_approve_reject(cluster.edge(0), &cluster.tokens, grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_approve_reject_on_the_in_memory_backend_of_one_process() {
    let node = Node::start();
    let grpc = PresenceClient::connect(node.presence_url())
        .await
        .expect("presence gRPC");
    confirm_approve_reject(node.sip(), &node.tokens, grpc).await;
}

/// Carol (another domain) waits pending, is approved over gRPC, then
/// rejected; Alice's watcher-information dialog follows every step.
async fn confirm_approve_reject(
    sip_server: SocketAddr,
    tokens: &Tokens,
    mut grpc: PresenceClient<Channel>,
) {
    let alice_token = tokens.token("alice@example.com");
    let carol_token = tokens.token("carol@partner.org");

    let mut alice = Ua::udp("alice@example.com", sip_server).await;
    let published = alice
        .publish(
            &alice_token,
            None,
            Some(&pidf("alice@example.com", "open", "in the office")),
            600,
        )
        .await;
    assert_eq!(published.status(), 200);

    // Alice watches her own watchers: a full document, nobody yet.
    let mut alice_winfo = Ua::udp("alice@example.com", sip_server).await;
    let (response, _) = alice_winfo
        .subscribe_winfo("alice@example.com", &alice_token, 300)
        .await;
    assert_eq!(response.status(), 200);
    let first = alice_winfo
        .next_notify(WAIT)
        .await
        .expect("first winfo NOTIFY");
    assert_eq!(sub_state(&first).state, SubState::Active);
    let event = first.headers().event().expect("Event").expect("present");
    assert_eq!(event.package, "presence.winfo");
    let doc = winfo(&first);
    assert_eq!(doc.state, DocState::Full);
    assert_eq!(doc.version, 1);
    assert!(watchers_of(&doc).is_empty(), "{doc:?}");

    // Carol is of another domain: the default policy (same-domain) makes
    // her wait. 200 OK, then a pending NOTIFY with no state in it.
    let mut carol = Ua::udp("carol@partner.org", sip_server).await;
    let (response, _) = carol
        .subscribe("alice@example.com", &carol_token, 300)
        .await;
    assert_eq!(response.status(), 200);
    let pending = carol.next_notify(WAIT).await.expect("pending NOTIFY");
    let state = sub_state(&pending);
    assert_eq!(state.state, SubState::Pending);
    assert!(
        state.expires.is_some_and(|e| e > 0 && e <= 300),
        "{state:?}"
    );
    assert!(pending.body().is_empty(), "{}", body_text(&pending));
    assert_eq!(content_type(&pending), None);

    // Alice's client sees her: a partial document, version 2.
    let partial = alice_winfo
        .next_notify(WAIT)
        .await
        .expect("winfo: carol pending");
    let doc = winfo(&partial);
    assert_eq!(doc.state, DocState::Partial);
    assert_eq!(doc.version, 2);
    assert_eq!(
        watchers_of(&doc),
        vec![(
            "sip:carol@partner.org".to_string(),
            WatcherStatus::Pending,
            WatcherEvent::Subscribe
        )]
    );
    let listed = grpc
        .list_watchers(ListWatchersRequest {
            presentity: "alice@example.com".into(),
        })
        .await
        .expect("ListWatchers")
        .into_inner()
        .watchers;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].watcher, "carol@partner.org");
    assert_eq!(listed[0].status, "pending");

    // A change of Alice's state is not shown to a pending watcher.
    let etag = published
        .headers()
        .sip_etag()
        .expect("SIP-ETag")
        .to_string();
    let modified = alice
        .publish(
            &alice_token,
            Some(&etag),
            Some(&pidf("alice@example.com", "open", "on a call")),
            600,
        )
        .await;
    assert_eq!(modified.status(), 200);
    assert!(
        carol.next_notify(QUIET).await.is_none(),
        "a pending watcher gets no state"
    );

    // Approved over gRPC: Carol's subscription turns active with the state.
    let approved = grpc
        .approve_watcher(DecideWatcherRequest {
            presentity: "alice@example.com".into(),
            watcher: "carol@partner.org".into(),
            polite: false,
        })
        .await
        .expect("ApproveWatcher")
        .into_inner();
    assert_eq!(approved.subscriptions_changed, 1);
    assert_eq!(
        approved
            .rules
            .expect("rules")
            .watchers
            .get("carol@partner.org"),
        Some(&"allow".to_string())
    );
    let active = carol
        .next_notify(WAIT)
        .await
        .expect("NOTIFY after approval");
    assert_eq!(sub_state(&active).state, SubState::Active);
    assert!(
        body_text(&active).contains("on a call"),
        "{}",
        body_text(&active)
    );
    assert!(
        active.headers().cseq().expect("CSeq").seq > pending.headers().cseq().expect("CSeq").seq
    );
    let partial = alice_winfo
        .next_notify(WAIT)
        .await
        .expect("winfo: carol approved");
    let doc = winfo(&partial);
    assert_eq!((doc.state, doc.version), (DocState::Partial, 3));
    assert_eq!(
        watchers_of(&doc),
        vec![(
            "sip:carol@partner.org".to_string(),
            WatcherStatus::Active,
            WatcherEvent::Approved
        )]
    );

    // Carol now follows changes like any allowed watcher.
    let etag = modified.headers().sip_etag().expect("SIP-ETag").to_string();
    let back = alice
        .publish(
            &alice_token,
            Some(&etag),
            Some(&pidf("alice@example.com", "open", "back at my desk")),
            600,
        )
        .await;
    assert_eq!(back.status(), 200);
    let change = carol.next_notify(WAIT).await.expect("NOTIFY of the change");
    assert!(body_text(&change).contains("back at my desk"));

    // Rejected later: her subscription ends with reason=rejected and no state,
    // and Alice's client sees her terminated.
    let rejected = grpc
        .reject_watcher(DecideWatcherRequest {
            presentity: "alice@example.com".into(),
            watcher: "carol@partner.org".into(),
            polite: false,
        })
        .await
        .expect("RejectWatcher")
        .into_inner();
    assert_eq!(rejected.subscriptions_changed, 1);
    let last = carol.next_notify(WAIT).await.expect("final NOTIFY");
    let state = sub_state(&last);
    assert_eq!(state.state, SubState::Terminated);
    assert_eq!(state.reason.as_deref(), Some("rejected"));
    assert!(last.body().is_empty(), "{}", body_text(&last));
    let partial = alice_winfo
        .next_notify(WAIT)
        .await
        .expect("winfo: carol rejected");
    let doc = winfo(&partial);
    assert_eq!((doc.state, doc.version), (DocState::Partial, 4));
    assert_eq!(
        watchers_of(&doc),
        vec![(
            "sip:carol@partner.org".to_string(),
            WatcherStatus::Terminated,
            WatcherEvent::Rejected
        )]
    );
    // And she cannot come back: 403.
    let (again, _) = carol
        .subscribe("alice@example.com", &carol_token, 300)
        .await;
    assert_eq!(again.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_watchers_get_403_and_polite_blocked_ones_only_a_neutral_document() {
    let cluster = Cluster::start(1);
    let alice_token = cluster.tokens.token("alice@example.com");
    let bob_token = cluster.tokens.token("bob@example.com");
    let dave_token = cluster.tokens.token("dave@example.com");
    let erin_token = cluster.tokens.token("erin@contoso.com");
    let mut grpc = presence_client(&cluster).await;

    let set = grpc
        .set_rules(SetRulesRequest {
            presentity: "alice@example.com".into(),
            rules: Some(Rules {
                default_action: "allow".into(),
                watchers: [("dave@example.com".to_string(), "block".to_string())].into(),
                domains: [("contoso.com".to_string(), "polite-block".to_string())].into(),
            }),
        })
        .await
        .expect("SetRules")
        .into_inner();
    assert_eq!(set.subscriptions_changed, 0);
    let read = grpc
        .get_rules(GetRulesRequest {
            presentity: "alice@example.com".into(),
        })
        .await
        .expect("GetRules")
        .into_inner()
        .rules
        .expect("rules");
    assert_eq!(read.default_action, "allow");
    assert_eq!(
        read.watchers.get("dave@example.com").map(String::as_str),
        Some("block")
    );
    assert_eq!(
        read.domains.get("contoso.com").map(String::as_str),
        Some("polite-block")
    );
    let bad = grpc
        .set_rules(SetRulesRequest {
            presentity: "alice@example.com".into(),
            rules: Some(Rules {
                default_action: "perhaps".into(),
                ..Rules::default()
            }),
        })
        .await
        .expect_err("an unknown action is refused");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);

    let mut alice = Ua::udp("alice@example.com", cluster.edge(0)).await;
    let published = alice
        .publish(
            &alice_token,
            None,
            Some(&pidf("alice@example.com", "open", "in the office")),
            600,
        )
        .await;
    assert_eq!(published.status(), 200);

    // Dave is blocked: 403, no dialog, no NOTIFY.
    let mut dave = Ua::udp("dave@example.com", cluster.edge(0)).await;
    let (refused, dialog) = dave.subscribe("alice@example.com", &dave_token, 300).await;
    assert_eq!(refused.status(), 403);
    assert!(dialog.is_none());
    assert!(dave.next_notify(QUIET).await.is_none());

    // Erin's domain is polite-blocked: an active subscription that only
    // ever shows "closed", whatever Alice publishes.
    let mut erin = Ua::udp("erin@contoso.com", cluster.edge(0)).await;
    let (ok, _) = erin.subscribe("alice@example.com", &erin_token, 300).await;
    assert_eq!(ok.status(), 200);
    let first = erin.next_notify(WAIT).await.expect("first NOTIFY");
    assert_eq!(sub_state(&first).state, SubState::Active);
    let text = body_text(&first);
    assert!(text.contains("<basic>closed</basic>"), "{text}");
    assert!(!text.contains("in the office"), "{text}");

    // Bob is allowed by the default and sees the real state.
    let mut bob = Ua::udp("bob@example.com", cluster.edge(0)).await;
    let (ok, _) = bob.subscribe("alice@example.com", &bob_token, 300).await;
    assert_eq!(ok.status(), 200);
    let first = bob.next_notify(WAIT).await.expect("first NOTIFY");
    assert!(body_text(&first).contains("in the office"));

    let etag = published
        .headers()
        .sip_etag()
        .expect("SIP-ETag")
        .to_string();
    let modified = alice
        .publish(
            &alice_token,
            Some(&etag),
            Some(&pidf("alice@example.com", "open", "on a call")),
            600,
        )
        .await;
    assert_eq!(modified.status(), 200);
    let change = bob.next_notify(WAIT).await.expect("Bob hears the change");
    assert!(body_text(&change).contains("on a call"));
    assert!(
        erin.next_notify(QUIET).await.is_none(),
        "a polite-blocked watcher hears nothing of changes"
    );

    // Polite-blocking Bob now masks his live subscription: one NOTIFY with
    // the neutral document, then nothing.
    let masked = grpc
        .reject_watcher(DecideWatcherRequest {
            presentity: "alice@example.com".into(),
            watcher: "bob@example.com".into(),
            polite: true,
        })
        .await
        .expect("RejectWatcher polite")
        .into_inner();
    assert_eq!(masked.subscriptions_changed, 1);
    let neutral = bob.next_notify(WAIT).await.expect("NOTIFY after masking");
    assert_eq!(sub_state(&neutral).state, SubState::Active);
    let text = body_text(&neutral);
    assert!(
        text.contains("<basic>closed</basic>") && !text.contains("on a call"),
        "{text}"
    );

    // Allowing Erin's domain again unmasks her at once, with the real state.
    let unmasked = grpc
        .set_rules(SetRulesRequest {
            presentity: "alice@example.com".into(),
            rules: Some(Rules {
                default_action: "allow".into(),
                watchers: [
                    ("dave@example.com".to_string(), "block".to_string()),
                    ("bob@example.com".to_string(), "polite-block".to_string()),
                ]
                .into(),
                domains: Default::default(),
            }),
        })
        .await
        .expect("SetRules")
        .into_inner();
    assert_eq!(unmasked.subscriptions_changed, 1);
    let real = erin
        .next_notify(WAIT)
        .await
        .expect("NOTIFY after unmasking");
    assert!(
        body_text(&real).contains("on a call"),
        "{}",
        body_text(&real)
    );
    assert!(bob.next_notify(QUIET).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_information_is_only_for_the_presentity_and_follows_unsubscribes() {
    let cluster = Cluster::start(2);
    let alice_token = cluster.tokens.token("alice@example.com");
    let bob_token = cluster.tokens.token("bob@example.com");

    // Bob may not watch Alice's watchers.
    let mut bob = Ua::udp("bob@example.com", cluster.edge(0)).await;
    let (refused, _) = bob
        .subscribe_winfo("alice@example.com", &bob_token, 300)
        .await;
    assert_eq!(refused.status(), 403);

    // A winfo SUBSCRIBE that accepts only PIDF: 406.
    let (not_acceptable, _) = bob
        .subscribe_to(
            "bob@example.com",
            &bob_token,
            300,
            "presence.winfo",
            "application/pidf+xml",
        )
        .await;
    assert_eq!(not_acceptable.status(), 406);

    // Bob watches Alice through edge 1; Alice's winfo dialog is on edge 0.
    let (ok, dialog) = bob.subscribe("alice@example.com", &bob_token, 300).await;
    assert_eq!(ok.status(), 200);
    let mut dialog = dialog.expect("dialog");
    bob.next_notify(WAIT).await.expect("first NOTIFY");

    let mut alice_winfo = Ua::udp("alice@example.com", cluster.edge(1)).await;
    let (ok, winfo_dialog) = alice_winfo
        .subscribe_winfo("alice@example.com", &alice_token, 300)
        .await;
    assert_eq!(ok.status(), 200);
    let mut winfo_dialog = winfo_dialog.expect("winfo dialog");
    let full = winfo(&alice_winfo.next_notify(WAIT).await.expect("full document"));
    assert_eq!((full.state, full.version), (DocState::Full, 1));
    assert_eq!(
        watchers_of(&full),
        vec![(
            "sip:bob@example.com".to_string(),
            WatcherStatus::Active,
            WatcherEvent::Subscribe
        )]
    );
    assert_eq!(full.lists[0].resource, "sip:alice@example.com");
    assert_eq!(full.lists[0].package, "presence");

    // Bob unsubscribes: a partial document with him terminated.
    let bye = bob.resubscribe(&mut dialog, &bob_token, 0).await;
    assert_eq!(bye.status(), 200);
    let partial = winfo(
        &alice_winfo
            .next_notify(WAIT)
            .await
            .expect("partial document"),
    );
    assert_eq!((partial.state, partial.version), (DocState::Partial, 2));
    assert_eq!(
        watchers_of(&partial),
        vec![(
            "sip:bob@example.com".to_string(),
            WatcherStatus::Terminated,
            WatcherEvent::Timeout
        )]
    );

    // A refresh of the winfo subscription brings the full state again.
    let refreshed = alice_winfo
        .resubscribe_to(&mut winfo_dialog, &alice_token, 300, "presence.winfo")
        .await;
    assert_eq!(refreshed.status(), 200);
    let again = winfo(
        &alice_winfo
            .next_notify(WAIT)
            .await
            .expect("full after refresh"),
    );
    assert_eq!((again.state, again.version), (DocState::Full, 3));
    assert!(watchers_of(&again).is_empty(), "{again:?}");
}
