//! The engine under a peer: builds requests with the `sip` crate, runs client transactions
//! (UDP retransmission, timeouts), answers authentication challenges, and dispatches what
//! arrives — responses to their transaction, NOTIFYs to their subscription, SUBSCRIBE and
//! OPTIONS to the peer's own notifier.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use sip::{
    Authorization, CSeq, Challenge, Event, HeaderName, Message, Method, NameAddr, Request,
    Response, Uri, Via,
};
use tokio::sync::{mpsc, oneshot};

use crate::config::{Credentials, Timers, TokenSource};
use crate::error::{Error, Result};
use crate::notifier::Notifier;
use crate::transport::{Link, Net, Transport};

/// A random token for tags, branches and Call-IDs.
pub(crate) fn random_token() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

/// A server: the link requests to it go over.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub link: Link,
}

/// The peer's identity: `user@domain`.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub user: String,
    pub domain: String,
    pub uri: Uri,
}

impl Identity {
    pub fn parse(text: &str) -> Result<Identity> {
        let bare = text
            .trim()
            .trim_start_matches("sips:")
            .trim_start_matches("sip:");
        let (user, domain) = bare.split_once('@').ok_or_else(|| {
            Error::InvalidAddress(text.to_owned(), "an identity is user@domain".to_owned())
        })?;
        let uri = Uri::sip(Some(user), domain, None)
            .map_err(|e| Error::InvalidAddress(text.to_owned(), e.to_string()))?;
        Ok(Identity {
            user: user.to_owned(),
            domain: domain.to_owned(),
            uri,
        })
    }

    pub fn aor(&self) -> String {
        format!("{}@{}", self.user, self.domain)
    }
}

/// One request to send: what varies between REGISTER, PUBLISH, SUBSCRIBE, NOTIFY and OPTIONS.
/// Via, Max-Forwards, From, CSeq, Contact and credentials are added by [`Core::request`].
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub method: Method,
    pub uri: Uri,
    pub from: NameAddr,
    pub to: NameAddr,
    pub call_id: String,
    /// The CSeq of the next attempt; bumped for each retry after a challenge.
    pub cseq: u32,
    pub route: Vec<NameAddr>,
    pub headers: Vec<(HeaderName, String)>,
    pub body: Option<(String, Bytes)>,
    pub link: Link,
    /// Whether the peer's credentials go with it (never to another peer).
    pub credentials: bool,
    /// A shorter deadline than the transaction timeout (heartbeats).
    pub timeout: Option<Duration>,
}

impl Outgoing {
    pub fn header(mut self, name: HeaderName, value: impl ToString) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }
}

/// Answers to requests retransmitted over UDP are sent again, not recomputed.
const ANSWERED_MEMORY: usize = 256;

/// Credentials in use, with what was learnt from the server.
struct Auth {
    credentials: Credentials,
    /// The bearer token last obtained from the source.
    token: Option<String>,
    nonce_count: u32,
}

pub(crate) struct Core {
    pub identity: Identity,
    pub net: Arc<Net>,
    pub timers: Timers,
    /// The transport of requests to servers and peers, unless a URI names one.
    pub transport: Transport,
    pub server: RwLock<Option<Target>>,
    /// Host written in Contact and Via.
    pub host: RwLock<String>,
    auth: tokio::sync::Mutex<Auth>,
    pending: Mutex<HashMap<String, oneshot::Sender<Response>>>,
    /// The subscriptions this peer holds, by Call-ID: where their NOTIFYs go.
    subscriptions: Mutex<HashMap<String, mpsc::UnboundedSender<Request>>>,
    answered: Mutex<VecDeque<(String, Link, Bytes)>>,
    pub notifier: Notifier,
    cseq: AtomicU32,
}

impl Core {
    pub fn new(
        identity: Identity,
        net: Arc<Net>,
        timers: Timers,
        transport: Transport,
        server: Option<Target>,
        host: String,
        credentials: Credentials,
    ) -> Core {
        Core {
            identity,
            net,
            timers,
            transport,
            server: RwLock::new(server),
            host: RwLock::new(host),
            auth: tokio::sync::Mutex::new(Auth {
                credentials,
                token: None,
                nonce_count: 0,
            }),
            pending: Mutex::new(HashMap::new()),
            subscriptions: Mutex::new(HashMap::new()),
            answered: Mutex::new(VecDeque::new()),
            notifier: Notifier::default(),
            cseq: AtomicU32::new(rand::random::<u16>() as u32 + 1),
        }
    }

    pub fn server(&self) -> Option<Target> {
        locks::read(&self.server).clone()
    }

    pub fn set_server(&self, target: Target) {
        *locks::write(&self.server) = Some(target);
    }

    pub async fn set_credentials(&self, credentials: Credentials) {
        let mut auth = self.auth.lock().await;
        auth.credentials = credentials;
        auth.token = None;
    }

    pub fn next_cseq(&self) -> u32 {
        self.cseq.fetch_add(1, Ordering::Relaxed)
    }

    fn host(&self) -> String {
        locks::read(&self.host).clone()
    }

    /// The Contact URI of this peer for requests over `transport`.
    pub fn contact(&self, transport: Transport) -> NameAddr {
        let port = self.net.local().port();
        let uri = Uri::sip(Some(&self.identity.user), &self.host(), Some(port))
            .and_then(|uri| match transport.uri_param() {
                Some(param) => uri.with_param("transport", Some(param)),
                None => Ok(uri),
            })
            .unwrap_or_else(|_| self.identity.uri.clone());
        NameAddr::new(uri)
    }

    /// Our own address as a From/To value with a tag.
    pub fn me(&self, tag: &str) -> NameAddr {
        NameAddr::new(self.identity.uri.clone()).with_tag(tag)
    }

    /// An out-of-dialog request to `target` (fresh Call-ID and From tag).
    pub fn out_of_dialog(
        &self,
        method: Method,
        uri: Uri,
        to: NameAddr,
        link: Link,
        credentials: bool,
    ) -> Outgoing {
        Outgoing {
            method,
            uri,
            from: self.me(&random_token()),
            to,
            call_id: format!("{}@{}", random_token(), self.host()),
            cseq: self.next_cseq(),
            route: Vec::new(),
            headers: Vec::new(),
            body: None,
            link,
            credentials,
            timeout: None,
        }
    }

    fn build(
        &self,
        out: &Outgoing,
        branch: &str,
        authorization: Option<&Authorization>,
    ) -> Request {
        let via = Via {
            transport: out.link.transport.via_name().to_owned(),
            host: self.host(),
            port: Some(self.net.local().port()),
            params: vec![
                ("branch".into(), Some(branch.to_owned())),
                ("rport".into(), None),
            ],
        };
        let mut builder = Request::builder(out.method.clone(), out.uri.clone())
            .typed(via)
            .header(HeaderName::MaxForwards, 70)
            .from(&out.from)
            .to(&out.to)
            .header(HeaderName::CallId, &out.call_id)
            .typed(CSeq::new(out.cseq, out.method.clone()));
        for route in &out.route {
            builder = builder.header(HeaderName::Route, route);
        }
        if !matches!(out.method, Method::Publish | Method::Options) {
            builder = builder.header(HeaderName::Contact, self.contact(out.link.transport));
        }
        if let Some(authorization) = authorization {
            builder = builder.typed(authorization.clone());
        }
        for (name, value) in &out.headers {
            builder = builder.header(name.clone(), value);
        }
        builder = builder.header(HeaderName::UserAgent, "presence-client");
        match &out.body {
            Some((content_type, body)) => builder.body(content_type, body.clone()).build(),
            None => builder.build(),
        }
    }

    /// Sends a request and returns its final response, answering one authentication
    /// challenge (a fresh token from the callback, or a Digest answer) on the way.
    pub async fn request(&self, out: &mut Outgoing) -> Result<Response> {
        let mut authorization = if out.credentials {
            self.initial_authorization().await?
        } else {
            None
        };
        let mut challenged = 0;
        loop {
            let branch = format!("{}{}", sip::MAGIC_COOKIE, random_token());
            let request = self.build(out, &branch, authorization.as_ref());
            let response = self.transact(out, &branch, request.to_bytes()).await?;
            out.cseq += 1;
            let status = response.status();
            if !(status == 401 || status == 407) || !out.credentials || challenged >= 2 {
                return Ok(response);
            }
            challenged += 1;
            authorization = Some(self.answer_challenge(&request, &response).await?);
        }
    }

    async fn initial_authorization(&self) -> Result<Option<Authorization>> {
        let mut auth = self.auth.lock().await;
        let source = match &auth.credentials {
            Credentials::Bearer(source) => source.clone(),
            // Digest needs the server's nonce: the first request goes without.
            Credentials::None | Credentials::Digest { .. } => return Ok(None),
        };
        if auth.token.is_none() {
            auth.token = Some(fetch_token(&source).await?);
        }
        Ok(auth.token.clone().map(Authorization::Bearer))
    }

    async fn answer_challenge(
        &self,
        request: &Request,
        response: &Response,
    ) -> Result<Authorization> {
        let header = if response.status() == 407 {
            HeaderName::ProxyAuthenticate
        } else {
            HeaderName::WwwAuthenticate
        };
        let challenges: Vec<Challenge> = response
            .headers()
            .lines(&header)
            .filter_map(|value| value.parse().ok())
            .collect();
        let mut auth = self.auth.lock().await;
        match auth.credentials.clone() {
            Credentials::None => Err(Error::Unauthorized(format!(
                "{} needs credentials",
                request.method()
            ))),
            Credentials::Bearer(source) => {
                let expired = challenges.iter().any(|c| {
                    matches!(c, Challenge::Bearer { error: Some(e), .. } if e == "invalid_token")
                });
                let sent = request
                    .headers()
                    .authorization()
                    .ok()
                    .flatten()
                    .and_then(|a| a.bearer_token().map(str::to_owned));
                // Another request already renewed the token this one carried.
                if let (Some(sent), Some(current)) = (&sent, &auth.token) {
                    if sent != current {
                        return Ok(Authorization::Bearer(current.clone()));
                    }
                }
                match source {
                    TokenSource::Callback(_) if expired || auth.token.is_none() => {
                        let token = fetch_token(&source).await?;
                        auth.token = Some(token.clone());
                        Ok(Authorization::Bearer(token))
                    }
                    _ => Err(Error::Unauthorized(describe_challenge(&challenges))),
                }
            }
            Credentials::Digest { username, password } => {
                let Some(Challenge::Digest {
                    realm,
                    nonce,
                    opaque,
                    algorithm,
                    ..
                }) = challenges
                    .iter()
                    .find(|c| matches!(c, Challenge::Digest { algorithm, .. }
                        if algorithm.as_deref().is_none_or(|a| auth::digest::DigestAlgorithm::from_name(a).is_some())))
                    .cloned()
                else {
                    return Err(Error::Unauthorized(describe_challenge(&challenges)));
                };
                let alg = algorithm
                    .as_deref()
                    .and_then(auth::digest::DigestAlgorithm::from_name)
                    .unwrap_or(auth::digest::DigestAlgorithm::Md5);
                auth.nonce_count += 1;
                let nc = format!("{:08x}", auth.nonce_count);
                let cnonce = random_token();
                let uri = request.uri().to_string();
                let ha1 = auth::digest::ha1(alg, &username, &realm, &password);
                let answer = auth::digest::response(
                    alg,
                    &ha1,
                    &nonce,
                    &nc,
                    &cnonce,
                    "auth",
                    request.method().as_str(),
                    &uri,
                );
                let mut params = vec![
                    ("username".to_owned(), username),
                    ("realm".to_owned(), realm),
                    ("nonce".to_owned(), nonce),
                    ("uri".to_owned(), uri),
                    ("response".to_owned(), answer),
                    ("algorithm".to_owned(), alg.name().to_owned()),
                    ("qop".to_owned(), "auth".to_owned()),
                    ("nc".to_owned(), nc),
                    ("cnonce".to_owned(), cnonce),
                ];
                if let Some(opaque) = opaque {
                    params.push(("opaque".to_owned(), opaque));
                }
                Ok(Authorization::Digest(params))
            }
        }
    }

    /// One client transaction: retransmits over UDP from T1 doubling to T2 until a final
    /// response arrives or the timeout passes (RFC 3261 §17.1.2).
    async fn transact(&self, out: &Outgoing, branch: &str, bytes: Bytes) -> Result<Response> {
        let (sender, mut receiver) = oneshot::channel();
        locks::lock(&self.pending).insert(branch.to_owned(), sender);
        let _forget = Forget {
            pending: &self.pending,
            branch,
        };
        let timeout = out.timeout.unwrap_or(self.timers.transaction_timeout);
        let deadline = tokio::time::Instant::now() + timeout;
        self.net.send(out.link, bytes.clone()).await?;
        let mut interval = self.timers.t1;
        loop {
            let wait = match out.link.transport {
                Transport::Udp => interval,
                Transport::Tcp | Transport::Tls | Transport::Ws => timeout,
            };
            let until = (tokio::time::Instant::now() + wait).min(deadline);
            match tokio::time::timeout_at(until, &mut receiver).await {
                Ok(Ok(response)) => return Ok(response),
                Ok(Err(_)) => return Err(Error::Closed),
                Err(_) if tokio::time::Instant::now() >= deadline => {
                    return Err(Error::Timeout(timeout))
                }
                Err(_) => {
                    self.net.send(out.link, bytes.clone()).await?;
                    interval = (interval * 2).min(self.timers.t2);
                }
            }
        }
    }

    /// Registers the channel a subscription's NOTIFYs go to.
    pub fn add_subscription(&self, call_id: &str, sender: mpsc::UnboundedSender<Request>) {
        locks::lock(&self.subscriptions).insert(call_id.to_owned(), sender);
    }

    pub fn remove_subscription(&self, call_id: &str) {
        locks::lock(&self.subscriptions).remove(call_id);
    }

    /// Sends a response to a request that arrived over `link`, remembering it for
    /// retransmissions of the request.
    pub async fn respond(&self, request: &Request, link: Link, response: Response) {
        let bytes = response.to_bytes();
        if let Some(key) = transaction_key(request) {
            let mut answered = locks::lock(&self.answered);
            if answered.len() >= ANSWERED_MEMORY {
                answered.pop_front();
            }
            answered.push_back((key, link, bytes.clone()));
        }
        if let Err(e) = self.net.send(link, bytes).await {
            tracing::debug!(error = %e, "answer not sent");
        }
    }

    /// Handles one message from the network.
    pub async fn dispatch(self: &Arc<Self>, message: Message, link: Link) {
        match message {
            Message::Response(response) => {
                if response.status() < 200 {
                    return;
                }
                let branch = response
                    .headers()
                    .top_via()
                    .ok()
                    .and_then(|via| via.branch().map(str::to_owned));
                let Some(branch) = branch else { return };
                let waiting = locks::lock(&self.pending).remove(&branch);
                if let Some(waiting) = waiting {
                    let _ = waiting.send(response);
                }
            }
            Message::Request(request) => self.handle_request(request, link).await,
        }
    }

    async fn handle_request(self: &Arc<Self>, request: Request, link: Link) {
        if let Some(key) = transaction_key(&request) {
            let earlier = locks::lock(&self.answered)
                .iter()
                .find(|(k, l, _)| *k == key && l.addr == link.addr)
                .map(|(_, _, bytes)| bytes.clone());
            if let Some(bytes) = earlier {
                let _ = self.net.send(link, bytes).await;
                return;
            }
        }
        match request.method() {
            Method::Notify => {
                let call_id = request.headers().call_id().map(str::to_owned);
                let target = call_id
                    .ok()
                    .and_then(|id| locks::lock(&self.subscriptions).get(&id).cloned());
                let status = match &target {
                    Some(_) if request.headers().subscription_state().is_err() => 400,
                    Some(_) => 200,
                    None => 481,
                };
                let response = Response::for_request(&request, status).build();
                self.respond(&request, link, response).await;
                if let (Some(target), 200) = (target, status) {
                    let _ = target.send(request);
                }
            }
            Method::Subscribe => {
                let response = self.notifier.on_subscribe(self, &request, link).await;
                self.respond(&request, link, response).await;
                self.notifier.after_subscribe(self, &request);
            }
            Method::Options => {
                let response = Response::for_request(&request, 200)
                    .to_tag(&random_token())
                    .header(HeaderName::Allow, "SUBSCRIBE, NOTIFY, OPTIONS")
                    .header(HeaderName::AllowEvents, "presence")
                    .header(HeaderName::Accept, "application/pidf+xml")
                    .build();
                self.respond(&request, link, response).await;
            }
            Method::Ack => {}
            _ => {
                let response = Response::for_request(&request, 405)
                    .to_tag(&random_token())
                    .header(HeaderName::Allow, "SUBSCRIBE, NOTIFY, OPTIONS")
                    .build();
                self.respond(&request, link, response).await;
            }
        }
    }
}

/// Removes a transaction's entry however its wait ends.
struct Forget<'a> {
    pending: &'a Mutex<HashMap<String, oneshot::Sender<Response>>>,
    branch: &'a str,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        locks::lock(self.pending).remove(self.branch);
    }
}

fn transaction_key(request: &Request) -> Option<String> {
    let branch = request.headers().top_via().ok()?.branch()?.to_owned();
    Some(format!("{branch} {}", request.method()))
}

async fn fetch_token(source: &TokenSource) -> Result<String> {
    match source {
        TokenSource::Static(token) => Ok(token.clone()),
        TokenSource::Callback(callback) => callback().await.map_err(Error::TokenSource),
    }
}

fn describe_challenge(challenges: &[Challenge]) -> String {
    challenges
        .first()
        .map(|c| match c {
            Challenge::Bearer {
                error,
                error_description,
                ..
            } => format!(
                "{} {}",
                error.as_deref().unwrap_or("credentials refused"),
                error_description.as_deref().unwrap_or("")
            ),
            Challenge::Digest { realm, .. } => format!("Digest credentials for {realm} refused"),
        })
        .unwrap_or_else(|| "credentials refused".to_owned())
        .trim()
        .to_owned()
}

/// The Event header of presence requests.
pub(crate) fn presence_event() -> Event {
    Event::new("presence")
}

/// A final response's status as an error.
pub(crate) fn rejected(method: &Method, response: &Response) -> Error {
    Error::Rejected {
        method: method.to_string(),
        status: response.status(),
        reason: response.reason().to_owned(),
    }
}

/// The granted interval of a response: Expires, else `asked`.
pub(crate) fn granted_expires(response: &Response, asked: u32) -> u32 {
    response.headers().expires().ok().flatten().unwrap_or(asked)
}
