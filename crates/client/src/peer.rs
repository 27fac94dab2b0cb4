//! [`SimplePeer`]: one identity on the network, with its registration, its published
//! presence, the presence it watches, and (peer to peer) its own notifier.

use std::future::{Future, IntoFuture};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use sip::{Message, Uri};
use tokio::sync::{mpsc, oneshot};

use crate::config::{Credentials, Timers, TokenSource};
use crate::core::{Core, Identity, Target};
use crate::error::{Error, Result};
use crate::refresh::{spawn_publication, spawn_registration, Command};
use crate::status::{PresenceInfo, PresenceStatus};
use crate::transport::{Link, Net, Transport};
use crate::watch::{PresenceWatcher, WatchTarget};

/// Configures a [`SimplePeer`]; start with [`SimplePeer::builder`].
#[derive(Clone)]
pub struct PeerBuilder {
    identity: String,
    server: Option<String>,
    bind: SocketAddr,
    transport: Transport,
    credentials: Credentials,
    timers: Timers,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for PeerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerBuilder")
            .field("identity", &self.identity)
            .field("server", &self.server)
            .field("bind", &self.bind)
            .field("transport", &self.transport)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl PeerBuilder {
    /// The presence server (`sip:pbx.example.com`, `sip:10.0.0.5:5060;transport=tcp`,
    /// `127.0.0.1:5060`). Without one the peer works peer to peer; [`SimplePeer::register`]
    /// sets it too.
    pub fn server(mut self, server: impl Into<String>) -> Self {
        self.server = Some(server.into());
        self
    }

    /// The local address for UDP and TCP (default `0.0.0.0:0`: any interface, a free port).
    /// Peers that others watch directly listen on a known port.
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// The transport of requests when the address does not name one (default UDP). The
    /// peer always listens on both UDP and TCP.
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// A fixed bearer token (RFC 8898).
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.credentials = Credentials::Bearer(TokenSource::Static(token.into()));
        self
    }

    /// Where bearer tokens come from: fixed, or a callback asked again when one expires.
    pub fn token_source(mut self, source: TokenSource) -> Self {
        self.credentials = Credentials::Bearer(source);
        self
    }

    /// Digest credentials, for servers that do not take tokens.
    pub fn digest(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials = Credentials::Digest {
            username: username.into(),
            password: password.into(),
        };
        self
    }

    /// The TLS client configuration (trusted roots, client certificate) for servers
    /// reached over [`Transport::Tls`] (`sip:host:5061;transport=tls`).
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Intervals and timers.
    pub fn timers(mut self, timers: Timers) -> Self {
        self.timers = timers;
        self
    }

    /// Binds the sockets and starts the peer.
    pub async fn build(self) -> Result<SimplePeer> {
        let identity = Identity::parse(&self.identity)?;
        let (net, incoming) = Net::bind(self.bind, self.tls).await?;
        let server = match &self.server {
            Some(text) => Some(server_target(&net, text, self.transport).await?),
            None => None,
        };
        let host = contact_host(self.bind.ip(), server.as_ref().map(|s| s.link.addr));
        let core = Arc::new(Core::new(
            identity,
            net,
            self.timers,
            self.transport,
            server,
            host,
            self.credentials,
        ));
        tokio::spawn(dispatch(Arc::downgrade(&core), incoming));
        let publication = spawn_publication(core.clone());
        let registration = spawn_registration(core.clone());
        Ok(SimplePeer {
            inner: Arc::new(Inner {
                core,
                publication,
                registration,
                bind_ip: self.bind.ip(),
            }),
        })
    }
}

/// Reads what the sockets deliver until they are gone.
async fn dispatch(
    core: std::sync::Weak<Core>,
    mut incoming: mpsc::UnboundedReceiver<(Message, Link)>,
) {
    while let Some((message, link)) = incoming.recv().await {
        let Some(core) = core.upgrade() else { return };
        core.dispatch(message, link).await;
    }
}

/// Parses and resolves a server address.
async fn server_target(net: &Net, text: &str, transport: Transport) -> Result<Target> {
    let trimmed = text.trim();
    let with_scheme = if trimmed.starts_with("sip:") || trimmed.starts_with("sips:") {
        trimmed.to_owned()
    } else {
        format!("sip:{trimmed}")
    };
    let uri = Uri::parse(&with_scheme)
        .map_err(|e| Error::InvalidAddress(text.to_owned(), e.to_string()))?;
    let link = net.resolve(&uri, transport).await?;
    Ok(Target { link })
}

/// The host others reach this peer at: the bound address, or when bound to every interface,
/// the local address of the route toward the server (else loopback).
fn contact_host(bind: IpAddr, toward: Option<SocketAddr>) -> String {
    if !bind.is_unspecified() {
        return bind.to_string();
    }
    let probe = toward.and_then(|server| {
        let socket = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
        socket.connect(server).ok()?;
        socket.local_addr().ok().map(|a| a.ip())
    });
    probe.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)).to_string()
}

struct Inner {
    core: Arc<Core>,
    publication: mpsc::UnboundedSender<Command<PresenceInfo>>,
    registration: mpsc::UnboundedSender<Command<Target>>,
    bind_ip: IpAddr,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The registration and publication tasks remove what they set up when their command
        // channels close (just now); the notifier's subscribers get a final NOTIFY.
        let core = self.core.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { core.notifier.shutdown().await });
        }
    }
}

/// A presence user agent: registers, publishes its presence, and watches others — through
/// a presence server, or directly peer to peer. Cloning gives another handle to the same
/// peer; when the last handle goes, the peer unpublishes, unregisters and tells its watchers.
///
/// ```no_run
/// use presence_client::{PresenceStatus, SimplePeer};
/// # async fn run(token: String) -> presence_client::Result<()> {
/// let alice = SimplePeer::new("alice@example.com").await?;
/// alice.register("sip:127.0.0.1:5060").auth_bearer(token).await?;
/// alice.presence(PresenceStatus::Available).note("Working from home").await?;
///
/// let mut watcher = alice.watch("bob").await?;
/// if let Some(info) = watcher.recv().await {
///     println!("Bob is now: {:?}", info.status);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SimplePeer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SimplePeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimplePeer")
            .field("identity", &self.identity())
            .field("local_addr", &self.local_addr())
            .finish()
    }
}

impl SimplePeer {
    /// A builder for a peer with `identity` (`user@domain`).
    pub fn builder(identity: impl Into<String>) -> PeerBuilder {
        PeerBuilder {
            identity: identity.into(),
            server: None,
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            transport: Transport::Udp,
            credentials: Credentials::None,
            timers: Timers::default(),
            tls: None,
        }
    }

    /// A peer with defaults: any interface, a free port, UDP, no server yet.
    pub async fn new(identity: impl Into<String>) -> Result<SimplePeer> {
        SimplePeer::builder(identity).build().await
    }

    fn core(&self) -> &Arc<Core> {
        &self.inner.core
    }

    /// The identity, `user@domain`.
    pub fn identity(&self) -> String {
        self.core().identity.aor()
    }

    /// The local address of the peer's sockets (UDP and TCP share the port).
    pub fn local_addr(&self) -> SocketAddr {
        self.core().net.local()
    }

    /// The address other peers watch this one at directly: `user@host:port`.
    pub fn p2p_address(&self) -> String {
        let host = locks::read(&self.core().host).clone();
        format!(
            "{}@{host}:{}",
            self.core().identity.user,
            self.local_addr().port()
        )
    }

    /// How many peers watch this one directly.
    pub fn direct_watchers(&self) -> usize {
        self.core().notifier.subscriber_count()
    }

    /// Registers with a server (which becomes the peer's server) and keeps the registration
    /// alive; add credentials with the builder's methods, then await it.
    ///
    /// ```no_run
    /// # async fn run(alice: presence_client::SimplePeer, token: String) -> presence_client::Result<()> {
    /// alice.register("sip:pbx.company.com").auth_bearer(token).await?;
    /// # Ok(()) }
    /// ```
    pub fn register(&self, server: impl Into<String>) -> RegisterBuilder {
        RegisterBuilder {
            peer: self.clone(),
            server: server.into(),
            credentials: None,
        }
    }

    /// Sets this peer's presence: returns a builder for the details, awaited to publish.
    ///
    /// ```no_run
    /// # use presence_client::PresenceStatus;
    /// # async fn run(alice: presence_client::SimplePeer) -> presence_client::Result<()> {
    /// alice
    ///     .presence(PresenceStatus::Available)
    ///     .note("Working from home")
    ///     .location("home")
    ///     .capabilities(["audio", "video"])
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn presence(&self, status: PresenceStatus) -> PresenceBuilder {
        PresenceBuilder {
            peer: self.clone(),
            info: PresenceInfo::new(status),
        }
    }

    /// Publishes a whole [`PresenceInfo`].
    pub async fn set_presence(&self, info: PresenceInfo) -> Result<()> {
        let (reply, wait) = oneshot::channel();
        self.inner
            .publication
            .send(Command::Set(info, reply))
            .map_err(|_| Error::Closed)?;
        wait.await.map_err(|_| Error::Closed)?
    }

    /// Shortcut for `presence(PresenceStatus::Available)`.
    pub fn available(&self) -> PresenceBuilder {
        self.presence(PresenceStatus::Available)
    }

    /// Shortcut for `presence(PresenceStatus::Busy)`.
    pub fn busy(&self) -> PresenceBuilder {
        self.presence(PresenceStatus::Busy)
    }

    /// Shortcut for `presence(PresenceStatus::Away)`.
    pub fn away(&self) -> PresenceBuilder {
        self.presence(PresenceStatus::Away)
    }

    /// Shortcut for `presence(PresenceStatus::DoNotDisturb)`.
    pub fn dnd(&self) -> PresenceBuilder {
        self.presence(PresenceStatus::DoNotDisturb)
    }

    /// Shortcut for `presence(PresenceStatus::Offline)`.
    pub fn offline(&self) -> PresenceBuilder {
        self.presence(PresenceStatus::Offline)
    }

    /// Shortcut for `presence(PresenceStatus::InCall)`.
    pub fn in_call(&self) -> PresenceBuilder {
        self.presence(PresenceStatus::InCall)
    }

    /// Watches someone's presence: `"alice"` (a user of this peer's domain, through the
    /// server), `"alice@example.com"`, `"sip:alice@example.com"`, or
    /// `"alice@192.168.1.100:5060"` (directly, peer to peer).
    ///
    /// Returns once the first SUBSCRIBE is answered, or after 5 s without an answer (a peer
    /// that is offline): the watcher then keeps trying by itself. A refusal (403, 404, ...)
    /// is the error of this call.
    pub async fn watch(&self, target: &str) -> Result<PresenceWatcher> {
        let core = self.core().clone();
        let parsed = WatchTarget::parse(&core, target).await?;
        PresenceWatcher::start(core, target, parsed).await
    }

    /// Unpublishes, unregisters and ends the subscriptions others hold to this peer, waiting
    /// for each (dropping the last handle does the same without waiting).
    pub async fn shutdown(&self) {
        let (reply, wait) = oneshot::channel();
        if self.inner.publication.send(Command::Stop(reply)).is_ok() {
            let _ = wait.await;
        }
        let (reply, wait) = oneshot::channel();
        if self.inner.registration.send(Command::Stop(reply)).is_ok() {
            let _ = wait.await;
        }
        self.core().notifier.shutdown().await;
    }

    async fn start_registration(
        &self,
        server: String,
        credentials: Option<Credentials>,
    ) -> Result<()> {
        let core = self.core();
        let target = server_target(&core.net, &server, core.transport).await?;
        if self.inner.bind_ip.is_unspecified() {
            *locks::write(&core.host) = contact_host(self.inner.bind_ip, Some(target.link.addr));
        }
        core.set_server(target.clone());
        if let Some(credentials) = credentials {
            core.set_credentials(credentials).await;
        }
        let (reply, wait) = oneshot::channel();
        self.inner
            .registration
            .send(Command::Set(target, reply))
            .map_err(|_| Error::Closed)?;
        wait.await.map_err(|_| Error::Closed)?
    }
}

/// A registration being set up; await it. See [`SimplePeer::register`].
#[must_use = "a registration does nothing until awaited"]
pub struct RegisterBuilder {
    peer: SimplePeer,
    server: String,
    credentials: Option<Credentials>,
}

impl RegisterBuilder {
    /// Authenticate with an OAuth 2.0 bearer token (RFC 8898), or any [`TokenSource`].
    pub fn auth_bearer(mut self, token: impl Into<TokenSource>) -> Self {
        self.credentials = Some(Credentials::Bearer(token.into()));
        self
    }

    /// Authenticate with Digest credentials.
    pub fn auth_digest(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials = Some(Credentials::Digest {
            username: username.into(),
            password: password.into(),
        });
        self
    }
}

impl IntoFuture for RegisterBuilder {
    type Output = Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<()>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            self.peer
                .start_registration(self.server, self.credentials)
                .await
        })
    }
}

/// Presence being set; add details, then await it to publish. See [`SimplePeer::presence`].
#[must_use = "presence is published only when awaited"]
pub struct PresenceBuilder {
    peer: SimplePeer,
    info: PresenceInfo,
}

impl PresenceBuilder {
    /// A note for humans.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.info.note = Some(note.into());
        self
    }

    /// The device in use.
    pub fn device(mut self, device: impl Into<String>) -> Self {
        self.info.device = Some(device.into());
        self
    }

    /// Where the user is (`office`, `home`, or free text).
    pub fn location(mut self, location: impl Into<String>) -> Self {
        self.info.location = Some(location.into());
        self
    }

    /// What the device can do (`audio`, `video`, `message`, ...).
    pub fn capabilities<I, S>(mut self, capabilities: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.info.capabilities = capabilities.into_iter().map(Into::into).collect();
        self
    }

    /// An extension element to publish as well (a vendor element, an RPID element without
    /// a field here).
    pub fn extension(mut self, extension: pidf::Extension) -> Self {
        self.info.extensions.push(extension);
        self
    }

    /// The info that will be published.
    pub fn info(&self) -> &PresenceInfo {
        &self.info
    }
}

impl IntoFuture for PresenceBuilder {
    type Output = Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<()>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { self.peer.set_presence(self.info).await })
    }
}
