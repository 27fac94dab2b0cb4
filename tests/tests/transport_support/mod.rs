//! What the transport and transaction tests share: edges started with
//! extra flags, a test PKI made at run time, and a look into Redis.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cluster_tests::cluster::Cluster;
use cluster_tests::free_port;
use cluster_tests::process::{wait_for_tcp, Process};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// An edge process started by a test, with the flags it was given.
pub struct TestEdge {
    pub process: Process,
    /// UDP and TCP on 127.0.0.1.
    pub port: u16,
}

impl TestEdge {
    pub fn sip(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

/// Starts an edge of `cluster` listening UDP and TCP on a fresh loopback
/// port, with `extra` flags (more listeners, timers, limits).
pub fn start_edge(cluster: &Cluster, id: &str, extra: &[String]) -> TestEdge {
    let port = free_port();
    let mut args = vec![
        "--udp".into(),
        format!("127.0.0.1:{port}"),
        "--tcp".into(),
        format!("127.0.0.1:{port}"),
        "--edge-id".into(),
        id.into(),
        "--presence-url".into(),
        cluster.presence_url(),
        "--registrar-url".into(),
        cluster.registrar_url(),
        "--redis-url".into(),
        cluster.redis.url(),
        "--rpc-timeout-ms".into(),
        "2000".into(),
    ];
    args.extend(cluster.tokens.edge_args());
    args.extend(extra.iter().cloned());
    let process = Process::spawn(id, "edge", &args, &[]);
    wait_for_tcp(port, Duration::from_secs(60));
    TestEdge { process, port }
}

/// A loopback TCP port free at the time of asking, on IPv4 or IPv6.
pub fn free_tcp_port(v6: bool) -> u16 {
    let listener = if v6 {
        std::net::TcpListener::bind("[::1]:0")
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")
    }
    .expect("binding a probe listener");
    listener.local_addr().expect("probe address").port()
}

/// A port free for both UDP and TCP on `[::1]`.
pub fn free_v6_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("[::1]:0").expect("binding [::1]");
        let addr = tcp.local_addr().expect("probe address");
        if std::net::UdpSocket::bind(addr).is_ok() {
            return addr.port();
        }
    }
}

/// Entries of a presentity's subscription map in Redis (`subs:{p}:m`).
pub fn subscriptions_stored(cluster: &Cluster, presentity: &str) -> usize {
    let reply = cluster
        .redis
        .command(&format!("HLEN subs:{{{presentity}}}:m"))
        .expect("HLEN");
    reply
        .trim()
        .trim_start_matches(':')
        .parse()
        .unwrap_or_else(|_| panic!("unexpected HLEN reply {reply:?}"))
}

/// Waits until `presentity` has `count` stored subscriptions.
pub async fn wait_for_subscriptions(
    cluster: &Cluster,
    presentity: &str,
    count: usize,
    timeout: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if subscriptions_stored(cluster, presentity) == count {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    subscriptions_stored(cluster, presentity) == count
}

/// A certificate authority, a server certificate for `localhost`,
/// `127.0.0.1` and `::1`, and a client certificate, all made at test time
/// and written as PEM files.
pub struct TestPki {
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    client_chain: Vec<CertificateDer<'static>>,
    client_key_pem: String,
    ca_der: CertificateDer<'static>,
}

impl TestPki {
    pub fn new() -> TestPki {
        let dir = tempfile::tempdir().expect("temporary directory");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "presence test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::CrlSign,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().expect("leaf key");
            let mut params = CertificateParams::new(names).expect("leaf params");
            params
                .distinguished_name
                .push(DnType::CommonName, "presence test");
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &issuer).expect("leaf certificate");
            (cert, key)
        };
        let (server, server_key) = leaf(
            vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client, client_key) = leaf(
            vec!["watcher.example.com".into()],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let ca = dir.path().join("ca.pem");
        let server_cert = dir.path().join("server.pem");
        let server_key_path = dir.path().join("server.key");
        std::fs::write(&ca, ca_cert.pem()).expect("writing CA");
        // Leaf first, then the issuing CA: a full chain as operators deploy it.
        std::fs::write(&server_cert, format!("{}{}", server.pem(), ca_cert.pem()))
            .expect("writing server chain");
        std::fs::write(&server_key_path, server_key.serialize_pem()).expect("writing key");
        TestPki {
            ca,
            server_cert,
            server_key: server_key_path,
            client_chain: vec![client.der().clone()],
            client_key_pem: client_key.serialize_pem(),
            ca_der: ca_cert.der().clone(),
            dir,
        }
    }

    /// Edge flags serving TLS with the server certificate.
    pub fn edge_args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.server_cert.display().to_string(),
            "--tls-key".into(),
            self.server_key.display().to_string(),
        ]
    }

    /// A TLS client trusting the test CA, presenting the client
    /// certificate when `with_client_cert`.
    pub fn connector(&self, with_client_cert: bool) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).expect("CA into roots");
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots);
        let config = if with_client_cert {
            let key =
                PrivateKeyDer::from_pem_slice(self.client_key_pem.as_bytes()).expect("client key");
            builder
                .with_client_auth_cert(self.client_chain.clone(), key)
                .expect("client certificate")
        } else {
            builder.with_no_client_auth()
        };
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }

    /// Writes the client certificate and its key as PEM files (for
    /// processes that present it); returns (certificate, key).
    pub fn client_files(&self) -> (PathBuf, PathBuf) {
        let cert = self.dir.path().join("client.pem");
        let key = self.dir.path().join("client.key");
        let pem: String = self
            .client_chain
            .iter()
            .map(|der| {
                let body = base64_lines(der.as_ref());
                format!("-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n")
            })
            .collect();
        std::fs::write(&cert, pem).expect("writing the client certificate");
        std::fs::write(&key, &self.client_key_pem).expect("writing the client key");
        (cert, key)
    }
}

/// Base64 in lines of 64 characters, each ending in a newline (PEM).
fn base64_lines(der: &[u8]) -> String {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    text.as_bytes()
        .chunks(64)
        .map(|line| format!("{}\n", String::from_utf8_lossy(line)))
        .collect()
}
