//! The refresh manager: the registration and the publication of a peer, each one task that
//! refreshes before expiry, recovers after failures with a growing delay, refreshes at once
//! when a connection it used has closed, and removes what it set up when stopped.
//! (Subscriptions are refreshed by their own task, see `watch`.)

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sip::{HeaderName, Method, NameAddr};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::config::{refresh_after, Timers};
use crate::core::{granted_expires, presence_event, rejected, Core, Outgoing, Target};
use crate::error::{Error, Result};
use crate::status::PresenceInfo;

/// Delays between retries: doubling from `retry_min` to `retry_max`.
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(timers: &Timers) -> Backoff {
        Backoff {
            min: timers.retry_min,
            max: timers.retry_max,
            next: timers.retry_min,
        }
    }

    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// What a registration or publication task is asked to do.
pub(crate) enum Command<T> {
    /// Set (or replace) what is registered/published; the reply says how the first attempt went.
    Set(T, oneshot::Sender<Result<()>>),
    /// Remove it and end; the reply comes when done.
    Stop(oneshot::Sender<()>),
}

/// A far-off instant for a timer that is not armed.
fn never() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

// ---------------------------------------------------------------------------------------------
// Registration

/// Starts the registration task of a peer.
pub(crate) fn spawn_registration(core: Arc<Core>) -> mpsc::UnboundedSender<Command<Target>> {
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(run_registration(core, receiver));
    sender
}

struct Registration {
    target: Target,
    call_id: String,
    from_tag: String,
    cseq: u32,
    expires: u32,
}

async fn run_registration(core: Arc<Core>, mut commands: mpsc::UnboundedReceiver<Command<Target>>) {
    let mut current: Option<Registration> = None;
    let mut refresh_at = never();
    let mut backoff = Backoff::new(&core.timers);
    let mut lost = core.net.lost();
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::Set(target, reply)) => {
                    let mut registration = Registration {
                        target,
                        call_id: format!("{}@presence-client", crate::core::random_token()),
                        from_tag: crate::core::random_token(),
                        cseq: core.next_cseq(),
                        expires: core.timers.register_expires,
                    };
                    let result = register(&core, &mut registration, core.timers.register_expires).await;
                    refresh_at = match &result {
                        Ok(granted) => {
                            backoff.reset();
                            Instant::now() + refresh_after(*granted)
                        }
                        Err(_) => Instant::now() + backoff.next_delay(),
                    };
                    current = Some(registration);
                    let _ = reply.send(result.map(|_| ()));
                }
                Some(Command::Stop(reply)) => {
                    if let Some(mut registration) = current.take() {
                        let _ = register(&core, &mut registration, 0).await;
                    }
                    let _ = reply.send(());
                    return;
                }
                None => {
                    if let Some(mut registration) = current.take() {
                        let _ = register(&core, &mut registration, 0).await;
                    }
                    return;
                }
            },
            _ = tokio::time::sleep_until(refresh_at) => {
                let Some(registration) = current.as_mut() else {
                    refresh_at = never();
                    continue;
                };
                let expires = registration.expires;
                refresh_at = match register(&core, registration, expires).await {
                    Ok(granted) => {
                        backoff.reset();
                        Instant::now() + refresh_after(granted)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "registration refresh failed; retrying");
                        Instant::now() + backoff.next_delay()
                    }
                };
            }
            changed = lost.changed() => {
                if changed.is_ok() && current.is_some() {
                    refresh_at = Instant::now() + backoff.next_delay();
                }
            }
        }
    }
}

/// One REGISTER (refresh or removal with `expires` 0); returns the interval granted.
async fn register(core: &Core, registration: &mut Registration, expires: u32) -> Result<u32> {
    let mut asked = expires;
    for _ in 0..3 {
        let request_uri = sip::Uri::sip(None, &core.identity.domain, None)
            .map_err(|e| Error::InvalidAddress(core.identity.domain.clone(), e.to_string()))?;
        let mut out = Outgoing {
            method: Method::Register,
            uri: request_uri,
            from: core.me(&registration.from_tag),
            to: NameAddr::new(core.identity.uri.clone()),
            call_id: registration.call_id.clone(),
            cseq: registration.cseq,
            route: Vec::new(),
            headers: vec![(HeaderName::Expires, asked.to_string())],
            body: None,
            link: registration.target.link,
            credentials: true,
            timeout: None,
        };
        let response = core.request(&mut out).await;
        registration.cseq = out.cseq;
        let response = response?;
        match response.status() {
            200..=299 => {
                if asked > 0 {
                    registration.expires = asked;
                }
                return Ok(granted_expires(&response, asked));
            }
            423 => {
                asked = response
                    .headers()
                    .min_expires()
                    .ok()
                    .flatten()
                    .unwrap_or(asked.saturating_mul(2));
                registration.expires = asked;
            }
            _ => return Err(rejected(&Method::Register, &response)),
        }
    }
    Err(Error::BadMessage(
        "REGISTER interval refused repeatedly".into(),
    ))
}

// ---------------------------------------------------------------------------------------------
// Publication

/// Starts the publication task of a peer.
pub(crate) fn spawn_publication(core: Arc<Core>) -> mpsc::UnboundedSender<Command<PresenceInfo>> {
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(run_publication(core, receiver));
    sender
}

struct Publication {
    info: PresenceInfo,
    etag: Option<String>,
    expires: u32,
}

async fn run_publication(
    core: Arc<Core>,
    mut commands: mpsc::UnboundedReceiver<Command<PresenceInfo>>,
) {
    let mut current: Option<Publication> = None;
    let mut refresh_at = never();
    let mut backoff = Backoff::new(&core.timers);
    let mut lost = core.net.lost();
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::Set(info, reply)) => {
                    core.notifier.set_own(info.clone());
                    let publication = current.get_or_insert(Publication {
                        info: info.clone(),
                        etag: None,
                        expires: core.timers.publish_expires,
                    });
                    publication.info = info;
                    let result = match core.server() {
                        // Peer to peer the notifier alone tells the watchers.
                        None => Ok(None),
                        Some(server) => publish(&core, &server, publication, true).await.map(Some),
                    };
                    refresh_at = match &result {
                        Ok(Some(granted)) => {
                            backoff.reset();
                            Instant::now() + refresh_after(*granted)
                        }
                        Ok(None) => never(),
                        Err(_) => Instant::now() + backoff.next_delay(),
                    };
                    let _ = reply.send(result.map(|_| ()));
                }
                Some(Command::Stop(reply)) => {
                    unpublish(&core, current.take()).await;
                    let _ = reply.send(());
                    return;
                }
                None => {
                    unpublish(&core, current.take()).await;
                    return;
                }
            },
            _ = tokio::time::sleep_until(refresh_at) => {
                let (Some(publication), Some(server)) = (current.as_mut(), core.server()) else {
                    refresh_at = never();
                    continue;
                };
                refresh_at = match publish(&core, &server, publication, false).await {
                    Ok(granted) => {
                        backoff.reset();
                        Instant::now() + refresh_after(granted)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "publication refresh failed; retrying");
                        Instant::now() + backoff.next_delay()
                    }
                };
            }
            changed = lost.changed() => {
                if changed.is_ok() && current.is_some() && core.server().is_some() {
                    refresh_at = Instant::now() + backoff.next_delay();
                }
            }
        }
    }
}

/// One PUBLISH (RFC 3903): with the document when `full` or when the server forgot the
/// entity tag (412: publish again in full), else a refresh by entity tag without body.
async fn publish(
    core: &Core,
    server: &Target,
    publication: &mut Publication,
    full: bool,
) -> Result<u32> {
    let mut with_body = full || publication.etag.is_none();
    let mut asked = publication.expires;
    for _ in 0..4 {
        let mut out = core.out_of_dialog(
            Method::Publish,
            core.identity.uri.clone(),
            NameAddr::new(core.identity.uri.clone()),
            server.link,
            true,
        );
        out = out
            .header(HeaderName::Event, presence_event())
            .header(HeaderName::Expires, asked);
        if let Some(etag) = &publication.etag {
            out = out.header(HeaderName::SipIfMatch, etag);
        }
        if with_body {
            let entity = core.identity.uri.to_string();
            let xml = publication.info.to_document(&entity).to_xml();
            out.body = Some(("application/pidf+xml".to_owned(), Bytes::from(xml)));
        }
        let response = core.request(&mut out).await?;
        match response.status() {
            200..=299 => {
                if let Some(etag) = response.headers().sip_etag() {
                    publication.etag = Some(etag.to_owned());
                }
                publication.expires = asked;
                return Ok(granted_expires(&response, asked));
            }
            412 => {
                // The server lost the publication (expired, or restarted): start over.
                publication.etag = None;
                with_body = true;
            }
            423 => {
                asked = response
                    .headers()
                    .min_expires()
                    .ok()
                    .flatten()
                    .unwrap_or(asked.saturating_mul(2));
            }
            _ => return Err(rejected(&Method::Publish, &response)),
        }
    }
    Err(Error::BadMessage("PUBLISH refused repeatedly".into()))
}

/// Removes the publication (`Expires: 0` with its entity tag).
async fn unpublish(core: &Core, publication: Option<Publication>) {
    let (Some(publication), Some(server)) = (publication, core.server()) else {
        return;
    };
    let Some(etag) = publication.etag else { return };
    let mut out = core
        .out_of_dialog(
            Method::Publish,
            core.identity.uri.clone(),
            NameAddr::new(core.identity.uri.clone()),
            server.link,
            true,
        )
        .header(HeaderName::Event, presence_event())
        .header(HeaderName::Expires, 0)
        .header(HeaderName::SipIfMatch, etag);
    out.timeout = Some(core.timers.transaction_timeout.min(Duration::from_secs(5)));
    if let Err(e) = core.request(&mut out).await {
        tracing::debug!(error = %e, "removing the publication failed; it expires by itself");
    }
}
