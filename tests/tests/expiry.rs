//! Expiry at scale on the cluster (real Redis, real presence, registrar and
//! edge processes): thousands of short-lived publications, registrations
//! and subscriptions expire within seconds of each other; every watcher
//! must hear each expiry — `closed` for a publication or registration,
//! `terminated;reason=timeout` for its own subscription — within a generous
//! bound of the moment it fell due, never before, and afterwards nothing of
//! them may remain in Redis. And when the presence service, which announces
//! every expiry, is gone, the edge holding a dialog ends it itself once its
//! expiry and grace have passed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cluster_tests::cluster::Cluster;
use cluster_tests::ua::{body_text, pidf, sub_state, Ua};
use sip::SubState;

/// Items of each kind (publication, registration, subscription).
const PER_KIND: usize = 700;
/// User agents working in parallel; each creates its share of every kind.
const WORKERS: usize = 35;
/// The items fall due within this long of each other (a mass expiry), at
/// least this long after the last of them was created.
const SPREAD: Duration = Duration::from_secs(1);
/// The subscriptions watching publications and registrations fall due this
/// long after the items they watch (a second mass expiry).
const WATCH_AFTER: Duration = Duration::from_secs(4);
/// How late a watcher may hear an expiry (the service aims at 1 s; the
/// benchmark measures it, this bound only catches a sweeper left behind).
const BOUND: Duration = Duration::from_secs(5);

/// Whole seconds from now until `due` (at least 1): the Expires that makes
/// something created now fall due at or just after `due`.
fn expires_until(due: Instant) -> u32 {
    let left = due.saturating_duration_since(Instant::now());
    let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    u32::try_from(secs.max(1)).expect("seconds fit")
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Publication,
    Registration,
    Subscription,
}

/// One dialog of a watcher and what it heard.
#[derive(Debug)]
struct Watched {
    kind: Kind,
    target: String,
    /// When the item falls due (request sent + Expires).
    item_due: Option<Instant>,
    /// When the watching subscription itself falls due.
    watch_due: Instant,
    opened: bool,
    /// When the watcher heard the item's expiry.
    heard_item: Option<Instant>,
    /// When the watcher heard its subscription end by timeout.
    heard_end: Option<Instant>,
}

impl Watched {
    fn done(&self) -> bool {
        self.heard_end.is_some() && (self.kind == Kind::Subscription || self.heard_item.is_some())
    }
}

/// When every worker has subscribed its watchers, the first to get there
/// fixes when the items fall due; everything is created before then.
struct Plan {
    subscribed: tokio::sync::Barrier,
    items_due: std::sync::OnceLock<Instant>,
    started: Instant,
}

/// Subscribes a worker's watchers, creates its share of items so that they
/// fall due together, then listens until each of its dialogs heard what it
/// must (or the deadline passes). Returns the dialogs.
async fn worker(
    worker: usize,
    edge: std::net::SocketAddr,
    tokens: HashMap<String, String>,
    plan: std::sync::Arc<Plan>,
) -> Vec<Watched> {
    let watcher_aor = format!("expiry-watcher{worker}@example.com");
    let watcher_token = tokens[&watcher_aor].clone();
    let mut watcher = Ua::udp(&watcher_aor, edge).await;
    let mut creator = Ua::udp(&watcher_aor, edge).await;
    let mut dialogs: HashMap<String, Watched> = HashMap::new();
    let share: Vec<usize> = (worker..PER_KIND).step_by(WORKERS).collect();

    // 1. Watchers of the publications and registrations, due well after
    //    the items (the Expires is fixed once the items' time is known: a
    //    refresh sets it).
    let mut watching = Vec::new();
    for &n in &share {
        for (kind, target) in [
            (Kind::Publication, format!("expiry-pub{n}@example.com")),
            (Kind::Registration, format!("expiry-reg{n}@example.com")),
        ] {
            let (response, dialog) = watcher.subscribe(&target, &watcher_token, 600).await;
            assert_eq!(response.status(), 200, "SUBSCRIBE to {target}");
            watching.push((
                kind,
                target,
                dialog.expect("dialog of an accepted SUBSCRIBE"),
            ));
        }
    }
    plan.subscribed.wait().await;
    // Phase 1 took about as long as phase 2 will; leave four times that,
    // so that another test loading the machine meanwhile (the suite runs
    // two at a time) does not make the items late to be created.
    let items_due = *plan
        .items_due
        .get_or_init(|| Instant::now() + (plan.started.elapsed() * 4).max(Duration::from_secs(10)));
    let watch_due = items_due + WATCH_AFTER;

    // 2. The items, and the watchers' subscriptions made to end after them.
    for (kind, target, mut dialog) in watching {
        let sent = Instant::now();
        let expires = expires_until(watch_due);
        let response = watcher
            .resubscribe(&mut dialog, &watcher_token, expires)
            .await;
        assert_eq!(response.status(), 200, "refresh of the watcher of {target}");
        let watch_due = sent + Duration::from_secs(expires.into());
        creator.aor = target.clone();
        let token = &tokens[&target];
        let sent = Instant::now();
        let expires = expires_until(items_due);
        let response = if kind == Kind::Publication {
            let body = pidf(&target, "open", "expiring");
            creator.publish(token, None, Some(&body), expires).await
        } else {
            creator.register(Some(token), expires).await
        };
        assert_eq!(response.status(), 200, "{kind:?} of {target}");
        dialogs.insert(
            dialog.call_id,
            Watched {
                kind,
                target,
                item_due: Some(sent + Duration::from_secs(expires.into())),
                watch_due,
                opened: false,
                heard_item: None,
                heard_end: None,
            },
        );
    }
    for &n in &share {
        let target = format!("expiry-sub{n}@example.com");
        let sent = Instant::now();
        let expires = expires_until(items_due);
        let (response, dialog) = watcher.subscribe(&target, &watcher_token, expires).await;
        assert_eq!(response.status(), 200, "SUBSCRIBE to {target}");
        dialogs.insert(
            dialog.expect("dialog of an accepted SUBSCRIBE").call_id,
            Watched {
                kind: Kind::Subscription,
                target,
                item_due: None,
                watch_due: sent + Duration::from_secs(expires.into()),
                opened: false,
                heard_item: None,
                heard_end: None,
            },
        );
    }
    assert!(
        Instant::now() < items_due,
        "creating the items took longer than planned"
    );

    // 3. Listen.
    let deadline = watch_due + SPREAD + BOUND * 2;
    while dialogs.values().any(|d| !d.done()) {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(notify) = watcher.next_notify(left).await else {
            break;
        };
        let now = Instant::now();
        let call_id = notify
            .headers()
            .call_id()
            .expect("Call-ID in NOTIFY")
            .to_string();
        let Some(dialog) = dialogs.get_mut(&call_id) else {
            panic!("NOTIFY of a dialog this watcher does not have");
        };
        let state = sub_state(&notify);
        let body = body_text(&notify);
        if state.state == SubState::Terminated {
            assert_eq!(
                state.reason.as_deref(),
                Some("timeout"),
                "only expiry ends these subscriptions"
            );
            dialog.heard_end.get_or_insert(now);
        }
        if dialog.kind != Kind::Subscription {
            if body.contains("<basic>open</basic>") {
                dialog.opened = true;
            } else if body.contains("<basic>closed</basic>") && dialog.opened {
                dialog.heard_item.get_or_insert(now);
            }
        }
    }
    dialogs.into_values().collect()
}

/// The keys left in Redis (`KEYS *` through the raw protocol).
fn redis_keys(cluster: &Cluster) -> Vec<String> {
    let reply = cluster.redis.command("KEYS *").expect("KEYS");
    reply
        .lines()
        .filter(|line| !line.starts_with('*') && !line.starts_with('$') && !line.is_empty())
        .map(str::to_string)
        .collect()
}

/// Keys that are meant to outlive every item: the state epoch, the edge's
/// lease schedule and its (empty) dialog registry's bookkeeping.
fn meant_to_stay(key: &str) -> bool {
    key.starts_with("epoch:") || key == "sched:leases" || key.starts_with("edge:")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_expiries_are_heard_on_time_and_leave_nothing_behind() {
    let cluster = Cluster::start(1);
    let edge = cluster.edge(0);
    let plan = std::sync::Arc::new(Plan {
        subscribed: tokio::sync::Barrier::new(WORKERS),
        items_due: std::sync::OnceLock::new(),
        started: Instant::now(),
    });
    let mut handles = Vec::new();
    for w in 0..WORKERS {
        let mut tokens = HashMap::new();
        let watcher = format!("expiry-watcher{w}@example.com");
        tokens.insert(watcher.clone(), cluster.tokens.token(&watcher));
        for n in (w..PER_KIND).step_by(WORKERS) {
            for aor in [
                format!("expiry-pub{n}@example.com"),
                format!("expiry-reg{n}@example.com"),
            ] {
                let token = cluster.tokens.token(&aor);
                tokens.insert(aor, token);
            }
        }
        handles.push(tokio::spawn(worker(w, edge, tokens, plan.clone())));
    }
    let mut dialogs = Vec::new();
    for handle in handles {
        dialogs.extend(handle.await.expect("worker"));
    }
    assert_eq!(dialogs.len(), 3 * PER_KIND);

    let mut late = Vec::new();
    let mut unheard = Vec::new();
    for d in &dialogs {
        let mut check = |what: &str, due: Instant, heard: Option<Instant>| match heard {
            None => unheard.push(format!("{what} of {}", d.target)),
            Some(heard) => {
                // The service counts from when it received the request,
                // a little after `due`'s send time: never announced early.
                assert!(
                    heard + Duration::from_millis(200) >= due,
                    "{what} of {} announced {:?} before it was due",
                    d.target,
                    due - heard
                );
                if heard > due + BOUND {
                    late.push(format!(
                        "{what} of {} heard {:?} late",
                        d.target,
                        heard - due
                    ));
                }
            }
        };
        if let Some(item_due) = d.item_due {
            check("expiry", item_due, d.heard_item);
        }
        check("end of subscription", d.watch_due, d.heard_end);
    }
    let worst = dialogs
        .iter()
        .flat_map(|d| {
            [
                d.item_due.zip(d.heard_item),
                Some(d.watch_due).zip(d.heard_end),
            ]
        })
        .flatten()
        .map(|(due, heard)| heard.saturating_duration_since(due))
        .max()
        .unwrap_or_default();
    eprintln!(
        "{} expiries heard; the latest {worst:?} after it fell due ({:?} into the test)",
        dialogs.len() + 2 * PER_KIND,
        plan.started.elapsed()
    );
    assert!(
        unheard.is_empty(),
        "{} expiries never heard, e.g. {:?}",
        unheard.len(),
        &unheard[..unheard.len().min(5)]
    );
    assert!(
        late.is_empty(),
        "{} expiries heard later than {BOUND:?}, e.g. {:?}",
        late.len(),
        &late[..late.len().min(5)]
    );

    // Everything expired: records, subscription maps and schedule entries
    // go with it (a presentity's record once its last version is past,
    // which the next sweep sees).
    let settle = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<String> = redis_keys(&cluster)
            .into_iter()
            .filter(|key| !meant_to_stay(key))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < settle,
            "{} keys left in Redis after every expiry, e.g. {:?}",
            left.len(),
            &left[..left.len().min(10)]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A dialog whose termination never comes — the presence service, which
/// announces every expiry, is gone — is ended by the edge that holds it
/// once its expiry and the edge's grace (10 s) have passed: a final NOTIFY
/// `terminated;reason=timeout`, never sooner. An idle dialog has no timer
/// of its own; the edge's schedule of overdue dialogs finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_ends_a_dialog_whose_termination_never_comes() {
    const EXPIRES: u64 = 2;
    const GRACE: Duration = Duration::from_secs(10);
    let mut cluster = Cluster::start(1);
    let aor = "overdue-watcher@example.com";
    let token = cluster.tokens.token(aor);
    let mut watcher = Ua::udp(aor, cluster.edge(0)).await;
    let started = Instant::now();
    let (response, dialog) = watcher
        .subscribe("overdue-target@example.com", &token, EXPIRES as u32)
        .await;
    assert_eq!(response.status(), 200, "SUBSCRIBE");
    assert!(dialog.is_some(), "an accepted SUBSCRIBE makes a dialog");
    let granted = response
        .headers()
        .expires()
        .expect("Expires parses")
        .expect("the 200 says the expiry granted");
    assert_eq!(
        u64::from(granted),
        EXPIRES,
        "the expiry asked for is granted"
    );
    let first = watcher
        .next_notify(Duration::from_secs(5))
        .await
        .expect("the NOTIFY that follows the SUBSCRIBE");
    assert_eq!(sub_state(&first).state, SubState::Active);

    cluster.presence.kill();

    let due = Duration::from_secs(EXPIRES) + GRACE;
    let deadline = Instant::now() + due + Duration::from_secs(15);
    let last = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let notify = watcher
            .next_notify(left)
            .await
            .expect("a final NOTIFY from the edge within 15 s of expiry and grace");
        let state = sub_state(&notify);
        if state.state == SubState::Terminated {
            break state;
        }
        assert_eq!(state.state, SubState::Active, "only active until the end");
    };
    let heard = started.elapsed();
    eprintln!("final NOTIFY {heard:?} after the SUBSCRIBE");
    assert_eq!(last.reason.as_deref(), Some("timeout"), "{last:?}");
    // The dialog started after `started`: its expiry and grace cannot
    // have run out sooner than this.
    assert!(
        heard >= due,
        "ended after {heard:?}, before expiry and grace ({due:?})"
    );
    // With no presence service to hand its dialogs to, a graceful stop
    // would wait out its drain; what this test is about is over.
    for edge in &mut cluster.edges {
        edge.kill();
    }
}
