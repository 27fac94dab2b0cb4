//! `office`: a working day of many users, each one a phone that
//!
//! * REGISTERs and refreshes its registration before it expires,
//! * PUBLISHes its state: an initial document, then from time to time a change
//!   (a modification with SIP-If-Match) and, when its publication would
//!   otherwise expire, a refresh (SIP-If-Match, no body); after a 412 it
//!   publishes in full again (RFC 3903 §4.1),
//! * watches a buddy list of other users, one SUBSCRIBE dialog per buddy,
//!   refreshed before it expires.
//!
//! Setup (registrations, initial publications, subscriptions, at most
//! `max_inflight` transactions at once) is not part of the measured phase,
//! which then lasts `duration`; changes are only published in it. The end is
//! the same as fan-out's: settle on every presentity's last state,
//! unsubscribe, check; then every user removes its publication and
//! registration. Registrations and publications are refreshed all along,
//! from each user's setup to its removal, so a slow setup or teardown never
//! lets them expire; subscriptions are refreshed until the teardown.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::{bounded, succeeded, Bed, Common, ScenarioError};
use crate::clock::Clock;
use crate::marker::{self, Marker};
use crate::report::Report;
use crate::ua::{Agent, Publication, Registration};
use crate::users::User;

/// Settings of the office scenario.
#[derive(Clone, Debug)]
pub struct Office {
    /// Shared settings.
    pub common: Common,
    /// Length of the measured phase.
    pub duration: Duration,
    /// Buddy list sizes (each user gets a size drawn uniformly from the range).
    pub buddies: RangeInclusive<usize>,
    /// Expires of REGISTER.
    pub register_expires: u32,
    /// Mean time between two changes of one user's state.
    pub publish_interval: Duration,
    /// Expires of PUBLISH.
    pub publish_expires: u32,
    /// Seed of the buddy lists and timings, so runs can be repeated.
    pub seed: u64,
}

/// What is known of a presentity's sequence numbers.
#[derive(Clone, Copy, Debug, Default)]
struct Published {
    /// The last sequence number a PUBLISH got a 2xx for.
    confirmed: Option<u64>,
    /// The last sequence number sent (a failed request may still have been applied).
    attempted: u64,
}

struct Ctx {
    bed: Bed,
    /// Held (shared) by each subscription refresh in flight and taken (exclusive) before
    /// unsubscribing, so no refresh crosses its dialog's unsubscription.
    refreshes: tokio::sync::RwLock<()>,
    agents: Vec<Arc<Agent>>,
    published: Vec<Mutex<Published>>,
    config: Office,
}

impl Ctx {
    fn published(&self, user: usize) -> Published {
        *locks::lock(&self.published[user])
    }

    fn update(&self, user: usize, f: impl FnOnce(&mut Published)) {
        let mut guard = locks::lock(&self.published[user]);
        f(&mut guard);
    }

    /// Publishes the document with sequence number `seq` (initial or modification).
    async fn publish_seq(&self, user: usize, publication: &mut Publication, seq: u64) {
        let agent = &self.agents[user];
        let marker = Marker {
            run: self.bed.run.clone(),
            seq,
            sent_ns: self.bed.clock.now_ns(),
        };
        let aor = agent.user.aor();
        self.bed.record_send(&aor, seq, marker.sent_ns);
        let body = marker::document(&aor, "phone", &marker);
        self.update(user, |p| p.attempted = seq);
        let outcome = agent
            .publish(publication, Some(body), self.config.publish_expires)
            .await;
        if succeeded(&outcome) {
            self.update(user, |p| p.confirmed = Some(seq));
        }
    }
}

/// Where the run is; every user follows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Users are setting up; they refresh what they have.
    Setup,
    /// The measured phase: changes are published until `end`.
    Load { start: Instant, end: Instant },
    /// Unsubscribing: registrations and publications are still refreshed.
    Teardown,
    /// Every user stops and hands its state back for the removals.
    Stop,
}

/// One user's state, from its setup to its removals.
struct Life {
    registration: Registration,
    registered_at: Instant,
    publication: Publication,
    published_at: Instant,
    seq: u64,
    dialogs: Vec<String>,
}

/// Runs the scenario with every user of `users`.
pub async fn run(config: &Office, users: Vec<User>, clock: Clock) -> Result<Report, ScenarioError> {
    if users.len() < 2 {
        return Err(ScenarioError::Config(
            "office needs at least 2 users".into(),
        ));
    }
    if config.buddies.start() > config.buddies.end() {
        return Err(ScenarioError::Config("--buddies: empty range".into()));
    }
    let bed = Bed::new(&config.common, clock, 0)?;
    let sockets = config.common.sockets;
    let agents = users
        .iter()
        .enumerate()
        .map(|(i, user)| bed.agent(user.clone(), i % sockets).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()?;
    let names: Vec<String> = users.iter().map(User::aor).collect();
    let mut rng = StdRng::seed_from_u64(config.seed);
    let buddy_lists: Vec<Vec<usize>> = (0..users.len())
        .map(|i| {
            let size = rng
                .random_range(config.buddies.clone())
                .min(users.len() - 1);
            rand::seq::index::sample(&mut rng, users.len() - 1, size)
                .into_iter()
                .map(|j| if j >= i { j + 1 } else { j })
                .collect()
        })
        .collect();
    let dialogs: usize = buddy_lists.iter().map(Vec::len).sum();
    let ctx = Arc::new(Ctx {
        bed,
        refreshes: tokio::sync::RwLock::new(()),
        published: (0..users.len())
            .map(|_| Mutex::new(Published::default()))
            .collect(),
        agents,
        config: config.clone(),
    });

    eprintln!(
        "  {} users registering, publishing and subscribing ({dialogs} dialogs)",
        users.len()
    );
    let setup_start = Instant::now();
    let (phase, phases) = watch::channel(Phase::Setup);
    let (ready_tx, mut ready) = mpsc::unbounded_channel();
    let users = Arc::new(users);
    let mut tasks = Vec::with_capacity(users.len());
    for (i, buddies) in buddy_lists.into_iter().enumerate() {
        let ctx = ctx.clone();
        let users = users.clone();
        let phases = phases.clone();
        let ready = ready_tx.clone();
        tasks.push(tokio::spawn(async move {
            let life = set_up(&ctx, i, &buddies, &users).await;
            // The receiver lives until every user reported; a closed one needs no report.
            let _ = ready.send(());
            live(&ctx, i, life, phases).await
        }));
    }
    drop(ready_tx);
    for _ in 0..users.len() {
        if ready.recv().await.is_none() {
            return Err(ScenarioError::Setup("a user's setup failed".into()));
        }
    }
    let setup = setup_start.elapsed();
    eprintln!(
        "  set up in {:.2} s: {} of {dialogs} subscriptions accepted",
        setup.as_secs_f64(),
        ctx.bed.table.count(|s| s.accepted)
    );

    let load_start = Instant::now();
    let end = load_start + config.duration;
    // The receivers live in the user tasks, which only end after Phase::Stop.
    let _ = phase.send(Phase::Load {
        start: load_start,
        end,
    });
    tokio::time::sleep_until(end).await;
    let _ = phase.send(Phase::Teardown);
    let load = load_start.elapsed();
    eprintln!("  measured phase over after {:.2} s", load.as_secs_f64());

    let teardown_start = Instant::now();
    let index: HashMap<String, usize> = names.iter().cloned().zip(0..).collect();
    let expected = |presentity: &str| {
        let p = ctx.published(*index.get(presentity)?);
        Some(p.confirmed?..=p.attempted)
    };
    drop(ctx.refreshes.write().await);
    ctx.bed.finish(&ctx.agents, expected).await;
    let _ = phase.send(Phase::Stop);
    let mut lives = Vec::with_capacity(tasks.len());
    for task in tasks {
        match task.await {
            Ok(life) => lives.push(life),
            Err(e) => return Err(ScenarioError::Setup(format!("a user's task failed: {e}"))),
        }
    }
    let jobs = lives.into_iter().enumerate().map(|(i, mut life)| {
        let agent = ctx.agents[i].clone();
        async move {
            if life.publication.etag.is_some() {
                let _ = agent.publish(&mut life.publication, None, 0).await;
            }
            let _ = agent.register(&mut life.registration, 0).await;
        }
    });
    bounded(&ctx.bed, jobs).await;
    let teardown = teardown_start.elapsed();

    let settings = json!({
        "users": users.len(),
        "duration_s": config.duration.as_secs_f64(),
        "buddies": [config.buddies.start(), config.buddies.end()],
        "dialogs": dialogs,
        "register_expires": config.register_expires,
        "publish_interval_s": config.publish_interval.as_secs_f64(),
        "publish_expires": config.publish_expires,
        "subscribe_expires": config.common.subscribe_expires,
        "sockets": sockets,
        "max_inflight": config.common.max_inflight,
        "seed": config.seed,
    });
    Ok(ctx
        .bed
        .report("office", settings, [setup, load, teardown], &names))
}

/// A user's setup: registration, initial publication, a dialog per buddy.
async fn set_up(ctx: &Ctx, i: usize, buddies: &[usize], users: &[User]) -> Life {
    let agent = ctx.agents[i].clone();
    let bed = &ctx.bed;
    let mut registration = agent.registration();
    {
        let _permit = bed.inflight.acquire().await;
        let _ = agent
            .register(&mut registration, ctx.config.register_expires)
            .await;
    }
    let mut publication = agent.publication();
    {
        let _permit = bed.inflight.acquire().await;
        ctx.publish_seq(i, &mut publication, 0).await;
    }
    let mut dialogs = Vec::with_capacity(buddies.len());
    let (mut registered_at, mut published_at) = (Instant::now(), Instant::now());
    let mut seq = 0;
    let register_every = Duration::from_secs(u64::from(ctx.config.register_expires)) / 2;
    let publish_every = Duration::from_secs(u64::from(ctx.config.publish_expires)) / 2;
    for &buddy in buddies {
        // A loaded server can make a long buddy list take longer than the registration
        // or the publication lives: refresh them on time meanwhile.
        if registered_at.elapsed() >= register_every {
            let _ = agent
                .register(&mut registration, ctx.config.register_expires)
                .await;
            registered_at = Instant::now();
        }
        if published_at.elapsed() >= publish_every {
            if publication.etag.is_some() {
                let _ = agent
                    .publish(&mut publication, None, ctx.config.publish_expires)
                    .await;
            }
            if publication.etag.is_none() {
                seq += 1;
                ctx.publish_seq(i, &mut publication, seq).await;
            }
            published_at = Instant::now();
        }
        let Ok(mut subscription) = agent.subscription(&users[buddy], i) else {
            continue;
        };
        let request = agent.subscribe_request(&mut subscription, bed.common.subscribe_expires);
        let call_id = subscription.call_id.clone();
        bed.table.insert(subscription);
        let _permit = bed.inflight.acquire().await;
        let outcome = agent.send(&request).await;
        bed.table.subscribed(&call_id, &outcome);
        dialogs.push(call_id);
    }
    Life {
        registration,
        registered_at,
        publication,
        published_at,
        seq,
        dialogs,
    }
}

/// Uniformly between `low` and `high` times `d`.
fn scaled(rng: &mut StdRng, d: Duration, low: f64, high: f64) -> Duration {
    d.mul_f64(rng.random_range(low..high))
}

/// What a user does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Register,
    RefreshPublication,
    Change,
    RefreshSubscriptions,
}

/// A user after its setup: refreshes (and, in the measured phase, changes) until
/// told to stop.
async fn live(ctx: &Ctx, i: usize, mut life: Life, mut phases: watch::Receiver<Phase>) -> Life {
    let agent = ctx.agents[i].clone();
    let config = &ctx.config;
    let expires = ctx.bed.common.subscribe_expires;
    let mut rng = StdRng::seed_from_u64(config.seed ^ (i as u64).wrapping_mul(0x9E37_79B9));
    let register_every = Duration::from_secs(u64::from(config.register_expires)) / 2;
    let publish_every = Duration::from_secs(u64::from(config.publish_expires)) / 2;
    let subscribe_every = Duration::from_secs(u64::from(expires)) / 2;
    let now = Instant::now();
    // First refreshes spread between 30 % and 50 % of the lifetime, so they do not all
    // come at once; later ones at half of it.
    let mut next_register = (now + scaled(&mut rng, register_every * 2, 0.3, 0.5))
        .min(life.registered_at + register_every);
    let mut next_refresh = (now + scaled(&mut rng, publish_every * 2, 0.3, 0.5))
        .min(life.published_at + publish_every);
    let mut next_subscribe = now + scaled(&mut rng, subscribe_every * 2, 0.3, 0.5);
    let mut next_change: Option<Instant> = None;
    loop {
        let phase = *phases.borrow_and_update();
        if phase == Phase::Stop {
            break;
        }
        if let Phase::Load { start, .. } = phase {
            next_change
                .get_or_insert_with(|| start + scaled(&mut rng, config.publish_interval, 0.0, 1.0));
        }
        let mut due = vec![
            (next_register, Action::Register),
            (next_refresh, Action::RefreshPublication),
        ];
        if matches!(phase, Phase::Setup | Phase::Load { .. }) {
            due.push((next_subscribe, Action::RefreshSubscriptions));
        }
        if let (Phase::Load { end, .. }, Some(at)) = (phase, next_change) {
            if at < end {
                due.push((at, Action::Change));
            }
        }
        let Some(&(at, action)) = due.iter().min_by_key(|(at, _)| *at) else {
            break;
        };
        tokio::select! {
            _ = tokio::time::sleep_until(at) => {}
            changed = phases.changed() => {
                if changed.is_err() {
                    break;
                }
                continue;
            }
        }
        match action {
            Action::Register => {
                let _ = agent
                    .register(&mut life.registration, config.register_expires)
                    .await;
                next_register = Instant::now() + register_every;
            }
            Action::Change => {
                life.seq += 1;
                ctx.publish_seq(i, &mut life.publication, life.seq).await;
                next_refresh = Instant::now() + publish_every;
                next_change =
                    Some(Instant::now() + scaled(&mut rng, config.publish_interval, 0.5, 1.5));
            }
            Action::RefreshPublication => {
                if life.publication.etag.is_some() {
                    let _ = agent
                        .publish(&mut life.publication, None, config.publish_expires)
                        .await;
                }
                if life.publication.etag.is_none() {
                    // No publication in force (412, or the last attempt failed): publish
                    // the next state in full.
                    life.seq += 1;
                    ctx.publish_seq(i, &mut life.publication, life.seq).await;
                }
                next_refresh = Instant::now() + publish_every;
            }
            Action::RefreshSubscriptions => {
                for call_id in &life.dialogs {
                    let _gate = ctx.refreshes.read().await;
                    if !matches!(*phases.borrow(), Phase::Setup | Phase::Load { .. }) {
                        break;
                    }
                    let request = ctx.bed.table.with(call_id, |s| {
                        s.accepted.then(|| agent.subscribe_request(s, expires))
                    });
                    if let Some(Some(request)) = request {
                        let outcome = agent.send(&request).await;
                        ctx.bed.table.subscribed(call_id, &outcome);
                    }
                }
                next_subscribe = Instant::now() + subscribe_every;
            }
        }
    }
    life
}
