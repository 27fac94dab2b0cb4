//! Real SIP phones for the interop suite (`phones.rs`): baresip and
//! linphonec as Debian ships them, each in a directory of its own (its
//! configuration, its certificate authority, its database), driven through
//! its standard input like a user at its console, and watched through what
//! it prints. The service is checked independently over gRPC, so a phone
//! that says nothing cannot pass a test.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rpc::presence::v1::presence_client::PresenceClient;
use rpc::presence::v1::{
    watch_presence_event, Basic, GetPresenceRequest, ListWatchersRequest, WatchPresenceRequest,
};
use rpc::registrar::v1::registrar_client::RegistrarClient;
use rpc::registrar::v1::{Binding, LookupRequest};
use tonic::transport::{Channel, Endpoint};

use crate::auth_support::ha1;

/// The domain of every test user, and the Digest realm.
pub const DOMAIN: &str = "example.com";

/// How long a phone or the service may take to show one expected change.
pub const STEP: Duration = Duration::from_secs(15);

/// How a phone reaches its edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    /// The `transport` URI parameter.
    pub fn param(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

/// An edge listener a phone sends every request to (its outbound proxy).
#[derive(Clone, Debug)]
pub struct Proxy {
    pub addr: SocketAddr,
    pub transport: Transport,
    /// The CA that signed the edge's certificate (TLS only).
    pub ca: Option<PathBuf>,
}

impl Proxy {
    fn uri(&self) -> String {
        format!("sip:{};transport={}", self.addr, self.transport.param())
    }
}

/// A phone's user: `user@example.com` with a password.
#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    pub password: String,
}

impl User {
    pub fn new(name: &str, password: &str) -> User {
        User {
            name: name.into(),
            password: password.into(),
        }
    }

    pub fn aor(&self) -> String {
        format!("{}@{DOMAIN}", self.name)
    }
}

/// A Digest credentials file with an HA1 per user and algorithm, as an
/// operator would write it (`user:realm:HA1:ALGORITHM`).
pub fn credentials_file(users: &[&User]) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("credentials file");
    for user in users {
        for algorithm in ["MD5", "SHA-256"] {
            writeln!(
                file,
                "{}:{DOMAIN}:{}:{algorithm}",
                user.name,
                ha1(algorithm, &user.name, DOMAIN, &user.password)
            )
            .expect("writing credentials");
        }
    }
    file.flush().expect("flushing credentials");
    file
}

/// A certificate authority and an edge certificate made at test time. The
/// edge's name is in the certificate both as an IP address and as a DNS
/// name: linphone's TLS library (mbedTLS) matches the host of its proxy
/// URI against DNS names only.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("temporary directory");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "phone interop test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);

        let key = KeyPair::generate().expect("edge key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("edge params");
        params
            .distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        params.subject_alt_names = vec![
            SanType::IpAddress([127, 0, 0, 1].into()),
            SanType::DnsName("127.0.0.1".try_into().expect("DNS name")),
            SanType::DnsName("localhost".try_into().expect("DNS name")),
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &issuer).expect("edge certificate");

        let ca = dir.path().join("ca.pem");
        let cert_path = dir.path().join("edge.pem");
        let key_path = dir.path().join("edge.key");
        std::fs::write(&ca, ca_cert.pem()).expect("writing CA");
        std::fs::write(&cert_path, format!("{}{}", cert.pem(), ca_cert.pem()))
            .expect("writing certificate chain");
        std::fs::write(&key_path, key.serialize_pem()).expect("writing key");
        Pki {
            dir,
            ca,
            cert: cert_path,
            key: key_path,
        }
    }

    /// Edge flags serving TLS on `port` with this certificate.
    pub fn edge_args(&self, port: u16) -> Vec<String> {
        vec![
            "--tls".into(),
            format!("127.0.0.1:{port}"),
            "--tls-cert".into(),
            self.cert.display().to_string(),
            "--tls-key".into(),
            self.key.display().to_string(),
        ]
    }
}

/// Text a phone printed, colour codes removed.
#[derive(Clone, Default)]
struct Output(Arc<Mutex<String>>);

impl Output {
    fn append(&self, line: &str) {
        let mut text = self.0.lock().expect("output lock");
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            // ANSI colour sequences: ESC [ ... letter.
            if c == '\u{1b}' {
                for next in chars.by_ref() {
                    if next.is_ascii_alphabetic() {
                        break;
                    }
                }
                continue;
            }
            text.push(c);
        }
        text.push('\n');
    }

    fn text(&self) -> String {
        self.0.lock().expect("output lock").clone()
    }

    fn follow(&self, stream: impl Read + Send + 'static) {
        let output = self.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut line = Vec::new();
            // Lines may not be UTF-8 (device names): read bytes.
            while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
                output.append(String::from_utf8_lossy(&line).trim_end());
                line.clear();
            }
        });
    }
}

/// linphonec's log file, in its directory.
const LINPHONE_LOG: &str = "linphone.log";

/// Which phone program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Baresip,
    Linphone,
}

/// One phone process, killed when dropped (and its output printed if the
/// test is failing).
pub struct Phone {
    pub name: String,
    pub kind: Kind,
    pub user: User,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    output: Output,
    /// Where the next [`Phone::expect`] starts looking.
    cursor: usize,
    /// Where the next [`Phone::sees`] starts looking: what the phone shows
    /// of others is followed apart from the answers to its commands, which
    /// may come in between.
    presence_cursor: usize,
    /// Its configuration and state; kept across a restart.
    dir: Option<tempfile::TempDir>,
    /// What it printed before it was restarted.
    earlier: String,
}

impl Phone {
    /// baresip 1.0 registered through `proxy`, watching `watch`. Its presence
    /// module is not loaded yet: see [`Phone::load_presence`].
    pub fn baresip(name: &str, user: &User, proxy: &Proxy, watch: &[&User]) -> Phone {
        let dir = tempfile::tempdir().expect("phone directory");
        let mut config = String::from(
            "poll_method epoll\n\
             # Any free port: nothing else on the machine can collide with it.\n\
             sip_listen 127.0.0.1:0\n\
             module_path /usr/lib/baresip/modules\n\
             module stdio.so\n\
             module g711.so\n\
             module_tmp account.so\n\
             module_app contact.so\n\
             module_app menu.so\n",
        );
        if let Some(ca) = &proxy.ca {
            config.push_str(&format!("sip_cafile {}\n", ca.display()));
        }
        std::fs::write(dir.path().join("config"), config).expect("baresip config");
        let account = format!(
            "<sip:{aor};transport={t}>;auth_pass={password};outbound=\"{outbound}\";regint=600;pubint=600\n",
            aor = user.aor(),
            t = proxy.transport.param(),
            password = user.password,
            outbound = proxy.uri(),
        );
        std::fs::write(dir.path().join("accounts"), account).expect("baresip accounts");
        let contacts: String = watch
            .iter()
            .map(|w| format!("\"{}\" <sip:{}>;presence=p2p\n", w.name, w.aor()))
            .collect();
        std::fs::write(dir.path().join("contacts"), contacts).expect("baresip contacts");
        let mut command = Command::new("baresip");
        command.arg("-f").arg(dir.path());
        Phone::spawn(name, Kind::Baresip, user, command, dir)
    }

    /// linphonec 5.1 registered through `proxy`, publishing its presence
    /// and watching `watch` (its friends).
    pub fn linphone(name: &str, user: &User, proxy: &Proxy, watch: &[&User]) -> Phone {
        let dir = tempfile::tempdir().expect("phone directory");
        write_linphone_config(dir.path(), user, proxy, watch);
        Phone::start_linphone(name, user, dir)
    }

    fn start_linphone(name: &str, user: &User, dir: tempfile::TempDir) -> Phone {
        let mut command = Command::new("linphonec");
        command
            .arg("-c")
            .arg(dir.path().join("linphonerc"))
            // Everything, SIP messages included, to a file: registration
            // failures are reported there only.
            .args(["-d", "6", "-l"])
            .arg(dir.path().join(LINPHONE_LOG))
            // Its database and certificates go under $HOME.
            .env("HOME", dir.path());
        Phone::spawn(name, Kind::Linphone, user, command, dir)
    }

    fn spawn(
        name: &str,
        kind: Kind,
        user: &User,
        mut command: Command,
        dir: tempfile::TempDir,
    ) -> Phone {
        command
            .current_dir(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap_or_else(|e| {
            panic!("starting {name} ({kind:?}); scripts/test.sh installs baresip-core and linphone-cli: {e}")
        });
        let output = Output::default();
        output.follow(child.stdout.take().expect("stdout piped"));
        output.follow(child.stderr.take().expect("stderr piped"));
        Phone {
            name: name.into(),
            kind,
            user: user.clone(),
            stdin: child.stdin.take(),
            child: Some(child),
            output,
            cursor: 0,
            presence_cursor: 0,
            dir: Some(dir),
            earlier: String::new(),
        }
    }

    /// Types `line` at the phone's console.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("phone running");
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("{}: writing {line:?}: {e}", self.name));
    }

    /// Waits until the phone prints `needle` after what earlier calls
    /// matched; panics with its output after `timeout`.
    pub async fn expect(&mut self, needle: &str, timeout: Duration) {
        let mut cursor = self.cursor;
        self.find(needle, &mut cursor, timeout).await;
        self.cursor = cursor;
    }

    async fn find(&self, needle: &str, cursor: &mut usize, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let text = self.output.text();
            if let Some(at) = text.get(*cursor..).and_then(|rest| rest.find(needle)) {
                *cursor += at + needle.len();
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "{} did not print {needle:?} within {timeout:?}; after the last match it printed:\n{}",
                    self.name,
                    text.get(*cursor..).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the phone printed `needle` since the last match.
    pub fn printed(&self, needle: &str) -> bool {
        self.output
            .text()
            .get(self.cursor..)
            .is_some_and(|rest| rest.contains(needle))
    }

    /// Everything the phone printed.
    pub fn output(&self) -> String {
        self.output.text()
    }

    /// Waits until the phone prints one of `needles` (after what earlier
    /// calls matched) and returns which.
    pub async fn expect_any(&mut self, needles: &[&str], timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let text = self.output.text();
            let rest = text.get(self.cursor..).unwrap_or_default();
            let found = needles
                .iter()
                .enumerate()
                .filter_map(|(i, needle)| rest.find(needle).map(|at| (at, i, needle.len())))
                .min();
            if let Some((at, i, len)) = found {
                self.cursor += at + len;
                return i;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "{} printed none of {needles:?} within {timeout:?}; since the last match it printed:\n{rest}",
                    self.name
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the phone says it is registered.
    pub async fn registered(&mut self) {
        match self.kind {
            Kind::Baresip => self.expect("useragent registered successfully", STEP).await,
            Kind::Linphone => {
                let deadline = tokio::time::Instant::now() + STEP;
                loop {
                    self.send("status register");
                    // "registered, identity=..." or "registered=0|-1".
                    let state = self
                        .expect_any(&["registered, identity=", "registered="], STEP)
                        .await;
                    if state == 0 {
                        return;
                    }
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "{} is still not registered after {STEP:?}",
                        self.name
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// Waits until the phone reports that its registration was refused.
    pub async fn refused(&mut self) {
        match self.kind {
            Kind::Baresip => {
                self.expect(
                    &format!("reg: sip:{}: 401 Unauthorized", self.user.aor()),
                    STEP,
                )
                .await
            }
            Kind::Linphone => {
                let log = self
                    .dir
                    .as_ref()
                    .expect("phone directory")
                    .path()
                    .join(LINPHONE_LOG);
                let needle = "to [LinphoneRegistrationFailed]";
                let deadline = tokio::time::Instant::now() + STEP;
                loop {
                    let text = std::fs::read(&log).unwrap_or_default();
                    if String::from_utf8_lossy(&text).contains(needle) {
                        return;
                    }
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "{}: no {needle:?} in its log within {STEP:?}",
                        self.name
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// baresip: loads its presence module (PUBLISH and SUBSCRIBE to its
    /// contacts). baresip 1.0 publishes as soon as the module starts and
    /// again when a registration succeeds; loaded after the registration it
    /// publishes once (see `phones.rs`).
    pub async fn load_presence(&mut self) {
        assert_eq!(self.kind, Kind::Baresip);
        self.send("/insmod presence");
        self.expect("loaded module presence", STEP).await;
    }

    /// baresip: publishes `open` (true) or `closed`.
    pub async fn set_open(&mut self, open: bool) {
        assert_eq!(self.kind, Kind::Baresip);
        let (command, to) = if open {
            ("/presence_online", "to 'Online'")
        } else {
            ("/presence_offline", "to 'Offline'")
        };
        self.send(command);
        self.expect(to, STEP).await;
    }

    /// Waits until this phone shows `watched` as online or offline, after
    /// what earlier calls showed.
    pub async fn sees(&mut self, watched: &User, online: bool) {
        let state = if online { "Online" } else { "Offline" };
        let needle = match self.kind {
            // Printed on every NOTIFY.
            Kind::Linphone => format!("<sip:{}> is {state}", watched.aor()),
            // Printed on every change after the first NOTIFY.
            Kind::Baresip => {
                let from = if online { "Offline" } else { "Online" };
                format!(
                    "<sip:{}> changed status from {from} to {state}",
                    watched.aor()
                )
            }
        };
        let mut cursor = self.presence_cursor;
        self.find(&needle, &mut cursor, STEP).await;
        self.presence_cursor = cursor;
    }

    /// Quits the phone from its console and waits for it to exit by itself
    /// (its un-PUBLISH, un-SUBSCRIBE and un-REGISTER are done by then).
    pub async fn quit(&mut self) {
        self.send(match self.kind {
            Kind::Baresip => "/quit",
            Kind::Linphone => "quit",
        });
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let child = self.child.as_mut().expect("phone running");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                self.stdin = None;
                // linphonec exits 0; baresip's exit status reports nothing useful.
                if self.kind == Kind::Linphone {
                    assert!(status.success(), "{} exited with {status}", self.name);
                }
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} did not exit within {STEP:?} of quit",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// linphonec: starts again after [`Phone::quit`], with the same
    /// configuration and database (a user restarting the phone).
    pub fn restart(&mut self) {
        assert_eq!(self.kind, Kind::Linphone);
        assert!(self.child.is_none(), "restart after quit");
        let dir = self.dir.take().expect("phone directory");
        let mut restarted = Phone::start_linphone(&self.name, &self.user, dir);
        self.child = restarted.child.take();
        self.stdin = restarted.stdin.take();
        self.dir = restarted.dir.take();
        self.earlier.push_str(&self.output.text());
        self.earlier.push_str("--- restarted ---\n");
        self.output = restarted.output.clone();
        self.cursor = 0;
        self.presence_cursor = 0;
    }
}

impl Drop for Phone {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "----- {} ({:?}) printed -----\n{}{}",
                self.name,
                self.kind,
                self.earlier,
                self.output.text()
            );
            if let Some(dir) = &self.dir {
                let log = std::fs::read(dir.path().join(LINPHONE_LOG)).unwrap_or_default();
                let log = String::from_utf8_lossy(&log);
                let lines: Vec<&str> = log.lines().collect();
                if !lines.is_empty() {
                    let tail = &lines[lines.len().saturating_sub(150)..];
                    eprintln!(
                        "----- end of {}'s log -----\n{}",
                        self.name,
                        tail.join("\n")
                    );
                }
            }
        }
    }
}

fn write_linphone_config(dir: &Path, user: &User, proxy: &Proxy, watch: &[&User]) {
    std::fs::create_dir_all(dir.join(".local/share/linphone")).expect("linphone data directory");
    let mut rc = String::from(
        "[sip]\n\
         # Random ports (-1): nothing else on the machine can collide with them.\n\
         sip_port=-1\n\
         sip_tcp_port=-1\n\
         sip_tls_port=-1\n\
         default_proxy=0\n\
         register_only_when_network_is_up=0\n\
         register_only_when_upnp_is_ok=0\n\
         guess_hostname=0\n",
    );
    if let Some(ca) = &proxy.ca {
        // Verify the edge's certificate (chain and name) against the test CA.
        rc.push_str(&format!(
            "root_ca={}\nverify_server_certs=1\nverify_server_cn=1\n",
            ca.display()
        ));
    }
    let uri = proxy.uri();
    rc.push_str(&format!(
        "\n[proxy_0]\n\
         reg_proxy=<{uri}>\n\
         # Every request through the edge, not to the domain's own server.\n\
         reg_route=<{uri};lr>\n\
         reg_identity=\"{name}\" <sip:{aor}>\n\
         reg_expires=600\n\
         reg_sendregister=1\n\
         publish=1\n\
         publish_expires=600\n\
         \n[auth_info_0]\n\
         username={name}\n\
         passwd={password}\n\
         domain={DOMAIN}\n",
        name = user.name,
        aor = user.aor(),
        password = user.password,
    ));
    for (i, watched) in watch.iter().enumerate() {
        rc.push_str(&format!(
            "\n[friend_{i}]\nurl=\"{}\" <sip:{}>\npol=accept\nsubscribe=1\n",
            watched.name,
            watched.aor()
        ));
    }
    std::fs::write(dir.join("linphonerc"), rc).expect("linphone config");
}

/// The service seen from outside the phones: presence and registrar over
/// gRPC, and every change of the watched presentities as it streams.
pub struct Service {
    presence: PresenceClient<Channel>,
    registrar: RegistrarClient<Channel>,
    changes: Arc<Mutex<Vec<(String, Basic)>>>,
    stream: tokio::task::JoinHandle<()>,
}

/// A gRPC channel with Nagle's algorithm off, like every client of the
/// workspace.
pub async fn grpc_channel(url: &str) -> Channel {
    Endpoint::from_shared(url.to_string())
        .expect("gRPC URL")
        .tcp_nodelay(true)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"))
}

impl Service {
    /// Connects, and follows the presence of `watched` from now on.
    pub async fn connect(presence_url: &str, registrar_url: &str, watched: &[&User]) -> Service {
        let presence = PresenceClient::new(grpc_channel(presence_url).await);
        let registrar = RegistrarClient::new(grpc_channel(registrar_url).await);
        let mut stream = presence
            .clone()
            .watch_presence(WatchPresenceRequest {
                presentities: watched.iter().map(|u| u.aor()).collect(),
                known_versions: Default::default(),
            })
            .await
            .expect("WatchPresence")
            .into_inner();
        let changes = Arc::new(Mutex::new(Vec::new()));
        let recorded = changes.clone();
        let stream = tokio::spawn(async move {
            while let Ok(Some(event)) = stream.message().await {
                if let Some(watch_presence_event::Event::State(state)) = event.event {
                    let basic = Basic::try_from(state.basic).unwrap_or(Basic::Unspecified);
                    recorded
                        .lock()
                        .expect("changes lock")
                        .push((state.presentity, basic));
                }
            }
        });
        Service {
            presence,
            registrar,
            changes,
            stream,
        }
    }

    /// The basic statuses `user` went through on the stream, repeats of one
    /// status in a row (changes of other parts) merged.
    pub fn basics(&self, user: &User) -> Vec<Basic> {
        let aor = user.aor();
        let mut seen: Vec<Basic> = Vec::new();
        for (presentity, basic) in self.changes.lock().expect("changes lock").iter() {
            if *presentity == aor && seen.last() != Some(basic) {
                seen.push(*basic);
            }
        }
        seen
    }

    pub async fn basic(&mut self, user: &User) -> (Basic, u64) {
        let state = self
            .presence
            .get_presence(GetPresenceRequest {
                presentity: user.aor(),
            })
            .await
            .expect("GetPresence")
            .into_inner();
        (
            Basic::try_from(state.basic).unwrap_or(Basic::Unspecified),
            state.version,
        )
    }

    /// The ids of the tuples `user`'s watchers are shown: only the
    /// service's neutral closed document's (`closed`) when nothing of any
    /// phone is left.
    pub async fn tuples(&mut self, user: &User) -> Vec<String> {
        let state = self
            .presence
            .get_presence(GetPresenceRequest {
                presentity: user.aor(),
            })
            .await
            .expect("GetPresence")
            .into_inner();
        let document = pidf::Document::parse(&state.pidf)
            .unwrap_or_else(|e| panic!("composed document of {}: {e}", user.aor()));
        document.tuples.into_iter().map(|t| t.id).collect()
    }

    pub async fn bindings(&mut self, user: &User) -> Vec<Binding> {
        self.registrar
            .lookup(LookupRequest { aor: user.aor() })
            .await
            .expect("Lookup")
            .into_inner()
            .bindings
    }

    /// The active watchers of `user`.
    pub async fn watchers(&mut self, user: &User) -> Vec<String> {
        let mut watchers: Vec<String> = self
            .presence
            .list_watchers(ListWatchersRequest {
                presentity: user.aor(),
            })
            .await
            .expect("ListWatchers")
            .into_inner()
            .watchers
            .into_iter()
            .filter(|w| w.status == "active")
            .map(|w| w.watcher)
            .collect();
        watchers.sort();
        watchers
    }

    /// Waits until `user`'s composed presence is `basic`.
    pub async fn wait_basic(&mut self, user: &User, basic: Basic) {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let (now, _) = self.basic(user).await;
            if now == basic {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} is {now:?} on the service, expected {basic:?}",
                user.aor()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `user` has a binding from `kind` (true) or none (false).
    pub async fn wait_registered(&mut self, user: &User, kind: Option<Kind>) {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let bindings = self.bindings(user).await;
            let done = match kind {
                None => bindings.is_empty(),
                Some(kind) => bindings.iter().any(|b| {
                    let agent = b.user_agent.to_ascii_lowercase();
                    match kind {
                        Kind::Baresip => agent.contains("baresip"),
                        Kind::Linphone => agent.contains("linphone"),
                    }
                }),
            };
            if done {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "bindings of {}: {bindings:?}, expected {kind:?}",
                user.aor()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the active watchers of `user` are exactly `watchers`.
    pub async fn wait_watchers(&mut self, user: &User, watchers: &[&User]) {
        let mut expected: Vec<String> = watchers.iter().map(|w| w.aor()).collect();
        expected.sort();
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let now = self.watchers(user).await;
            if now == expected {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "watchers of {}: {now:?}, expected {expected:?}",
                user.aor()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stream.abort();
    }
}
