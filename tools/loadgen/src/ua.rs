//! One user's requests: REGISTER, PUBLISH and SUBSCRIBE, built with the `sip`
//! crate's builders and sent as client transactions over a shared
//! [`Endpoint`]. Every request gets a fresh branch; its retransmissions reuse
//! it (the endpoint resends the same bytes).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use sip::{
    Authorization, CSeq, Contact, Event, HeaderName, Method, NameAddr, Request, RequestBuilder,
    Uri, Via, MAGIC_COOKIE,
};

use crate::checks::DialogCheck;
use crate::dialog::Subscription;
use crate::stats::RequestStats;
use crate::transport::{Endpoint, Failed, Transaction};
use crate::users::User;

/// The media type of presence documents.
pub const PIDF: &str = "application/pidf+xml";

/// Errors building requests.
#[derive(Debug, thiserror::Error)]
pub enum UaError {
    /// A user or domain that makes no valid SIP URI.
    #[error("{0:?} is not a valid SIP address")]
    BadAddress(String),
}

/// Request counters and latencies shared by every user of a run.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<RequestStats>,
}

impl Metrics {
    fn lock(&self) -> MutexGuard<'_, RequestStats> {
        // Counters stay meaningful after a panic elsewhere; keep counting.
        locks::lock(&self.requests)
    }

    /// A copy of the statistics so far.
    pub fn snapshot(&self) -> RequestStats {
        self.lock().clone()
    }

    fn record(&self, method: &str, outcome: &Result<Transaction, Failed>) {
        let mut stats = self.lock();
        let m = stats.method(method);
        m.sent += 1;
        match outcome {
            Ok(t) => {
                m.retransmissions += u64::from(t.retransmissions);
                *m.statuses.entry(t.response.status()).or_default() += 1;
                m.latency.record(t.answered_ns.saturating_sub(t.sent_ns));
            }
            Err(failed) => {
                m.retransmissions += u64::from(failed.retransmissions);
                match failed.error {
                    crate::transport::TransportError::Timeout(_) => m.timeouts += 1,
                    _ => m.send_errors += 1,
                }
            }
        }
    }
}

/// A new random token (tags, Call-IDs, branches).
fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::Rng::fill(&mut rand::rng(), buf.as_mut_slice());
    hex::encode(buf)
}

/// The state of a user's registration (one Call-ID for all its refreshes, RFC 3261
/// §10.2.4).
#[derive(Debug)]
pub struct Registration {
    call_id: String,
    from: NameAddr,
    cseq: u32,
}

/// The state of a user's publication (RFC 3903): its entity-tag and the sequence
/// number of the document it last sent.
#[derive(Debug)]
pub struct Publication {
    call_id: String,
    from: NameAddr,
    cseq: u32,
    /// The SIP-ETag of the publication in force, once one was accepted.
    pub etag: Option<String>,
}

/// One user agent: a user on a shared endpoint, sending to one server.
pub struct Agent {
    /// The user.
    pub user: User,
    aor_uri: Uri,
    endpoint: Arc<Endpoint>,
    server: SocketAddr,
    contact: NameAddr,
    metrics: Arc<Metrics>,
}

impl Agent {
    /// An agent for `user` on `endpoint`, sending every request to `server`.
    pub fn new(
        user: User,
        endpoint: Arc<Endpoint>,
        server: SocketAddr,
        metrics: Arc<Metrics>,
    ) -> Result<Agent, UaError> {
        let bad = || UaError::BadAddress(user.aor());
        let aor_uri = Uri::sip(Some(&user.user), &user.domain, None).map_err(|_| bad())?;
        let local = endpoint.local();
        let contact_uri = Uri::sip(
            Some(&user.user),
            &local.ip().to_string(),
            Some(local.port()),
        )
        .map_err(|_| bad())?;
        Ok(Agent {
            aor_uri,
            contact: NameAddr::new(contact_uri),
            user,
            endpoint,
            server,
            metrics,
        })
    }

    /// The user's address-of-record URI.
    pub fn uri(&self) -> &Uri {
        &self.aor_uri
    }

    /// The start of every request: Via with a fresh branch (and `rport`, RFC 3581),
    /// Max-Forwards, From, To, Call-ID, CSeq, and the bearer token when there is one.
    fn request(
        &self,
        method: Method,
        uri: Uri,
        from: &NameAddr,
        to: &NameAddr,
        call_id: &str,
        cseq: u32,
    ) -> RequestBuilder {
        let local = self.endpoint.local();
        let branch = format!("{MAGIC_COOKIE}{}", random_token(10));
        let mut via = Via::new("UDP", &local.ip().to_string(), Some(local.port()), &branch);
        via.params.push(("rport".to_owned(), None));
        let mut builder = Request::builder(method.clone(), uri)
            .typed(via)
            .header(HeaderName::MaxForwards, 70)
            .from(from)
            .to(to)
            .header(HeaderName::CallId, call_id)
            .typed(CSeq::new(cseq, method))
            .header(HeaderName::UserAgent, "loadgen");
        if let Some(token) = &self.user.token {
            builder = builder.typed(Authorization::Bearer(token.clone()));
        }
        builder
    }

    /// Sends a request as a client transaction and records its outcome.
    pub async fn send(&self, request: &Request) -> Result<Transaction, Failed> {
        let outcome = self.endpoint.transact(request, self.server).await;
        self.metrics.record(request.method().as_str(), &outcome);
        outcome
    }

    /// A new registration state for this user.
    pub fn registration(&self) -> Registration {
        Registration {
            call_id: format!("{}@loadgen", random_token(12)),
            from: NameAddr::new(self.aor_uri.clone()).with_tag(random_token(6)),
            cseq: 0,
        }
    }

    /// REGISTERs the agent's contact for `expires` seconds (0 removes it).
    pub async fn register(
        &self,
        registration: &mut Registration,
        expires: u32,
    ) -> Result<Transaction, Failed> {
        registration.cseq += 1;
        let registrar = Uri::sip(None, self.aor_uri.host(), None).unwrap_or(self.aor_uri.clone());
        let request = self
            .request(
                Method::Register,
                registrar,
                &registration.from,
                &NameAddr::new(self.aor_uri.clone()),
                &registration.call_id,
                registration.cseq,
            )
            .typed(Contact::new(self.contact.clone()))
            .header(HeaderName::Expires, expires)
            .build();
        self.send(&request).await
    }

    /// A new publication state for this user.
    pub fn publication(&self) -> Publication {
        Publication {
            call_id: format!("{}@loadgen", random_token(12)),
            from: NameAddr::new(self.aor_uri.clone()).with_tag(random_token(6)),
            cseq: 0,
            etag: None,
        }
    }

    /// PUBLISHes: with a body and no entity-tag an initial publication, with both a
    /// modification, with only the entity-tag a refresh, and with `expires` 0 a removal
    /// (RFC 3903 §4). A 2xx's SIP-ETag is kept; a 412 forgets the entity-tag, so the next
    /// call publishes in full.
    pub async fn publish(
        &self,
        publication: &mut Publication,
        body: Option<String>,
        expires: u32,
    ) -> Result<Transaction, Failed> {
        publication.cseq += 1;
        let mut builder = self
            .request(
                Method::Publish,
                self.aor_uri.clone(),
                &publication.from,
                &NameAddr::new(self.aor_uri.clone()),
                &publication.call_id,
                publication.cseq,
            )
            .typed(Event::new("presence"))
            .header(HeaderName::Expires, expires);
        if let Some(etag) = &publication.etag {
            builder = builder.header(HeaderName::SipIfMatch, etag);
        }
        if let Some(body) = body {
            builder = builder.body(PIDF, Bytes::from(body));
        }
        let outcome = self.send(&builder.build()).await;
        if let Ok(t) = &outcome {
            let status = t.response.status();
            if (200..300).contains(&status) {
                publication.etag = if expires == 0 {
                    None
                } else {
                    t.response.headers().sip_etag().map(str::to_owned)
                };
            } else if status == 412 {
                publication.etag = None;
            }
        }
        outcome
    }

    /// A new subscription dialog of this agent to `presentity` (nothing sent yet).
    pub fn subscription(&self, presentity: &User, watcher: usize) -> Result<Subscription, UaError> {
        let uri = Uri::sip(Some(&presentity.user), &presentity.domain, None)
            .map_err(|_| UaError::BadAddress(presentity.aor()))?;
        Ok(Subscription {
            call_id: format!("{}@loadgen", random_token(12)),
            local: NameAddr::new(self.aor_uri.clone()).with_tag(random_token(6)),
            remote: NameAddr::new(uri.clone()),
            target: uri,
            route_set: Vec::new(),
            cseq: 0,
            presentity: presentity.aor(),
            watcher,
            check: DialogCheck::new(),
            arrivals: Vec::new(),
            subscribed_ns: 0,
            accepted: false,
            retransmitted_subscribes: 0,
            history: std::collections::VecDeque::new(),
        })
    }

    /// The next SUBSCRIBE of a dialog: the initial one until the remote tag is known,
    /// then in-dialog (refresh, or unsubscription with `expires` 0). Tells the dialog's
    /// checks what NOTIFY to expect in answer.
    pub fn subscribe_request(&self, subscription: &mut Subscription, expires: u32) -> Request {
        subscription.cseq += 1;
        let (uri, to) = match subscription.check.remote_tag() {
            Some(tag) => (
                subscription.target.clone(),
                subscription.remote.clone().with_tag(tag),
            ),
            None => (subscription.remote.uri.clone(), subscription.remote.clone()),
        };
        let mut builder = self
            .request(
                Method::Subscribe,
                uri,
                &subscription.local,
                &to,
                &subscription.call_id,
                subscription.cseq,
            )
            .typed(Contact::new(self.contact.clone()))
            .typed(Event::new("presence"))
            .header(HeaderName::Accept, PIDF)
            .header(HeaderName::Expires, expires);
        for route in &subscription.route_set {
            builder = builder.header(HeaderName::Route, route);
        }
        if expires == 0 {
            subscription.check.unsubscribed();
        } else if subscription.check.remote_tag().is_some() {
            // A refresh is answered with the current state, which may repeat the last one.
            subscription.check.subscribed();
        }
        builder.build()
    }
}

/// Whether a transaction ended with a 2xx.
pub fn succeeded(outcome: &Result<Transaction, Failed>) -> bool {
    matches!(outcome, Ok(t) if (200..300).contains(&t.response.status()))
}
