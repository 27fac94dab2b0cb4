//! Clusters of the project's own container images on a private Docker
//! network, started with testcontainers: one Redis (`presence-redis:local`),
//! M presence and K registrar replicas and N edges (`presence:local`), the
//! images `scripts/build-images.sh` makes offline.
//!
//! Containers find each other by name on the network (Docker's DNS); the
//! edges get every replica's name in `--presence-url` / `--registrar-url`
//! and balance over them. The test process reaches the edges only through their
//! published SIP ports on 127.0.0.1. Faults are real: `docker kill
//! --signal KILL`, stop and start, pause and unpause.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use testcontainers::core::{ContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, ContainerRequest, GenericImage, ImageExt};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::cluster::Tokens;

/// The services' image and the Redis image (tag `local`).
pub const APP_IMAGE: &str = "presence";
pub const REDIS_IMAGE: &str = "presence-redis";
pub const TAG: &str = "local";

const SIP: ContainerPort = ContainerPort::Udp(5060);
const PRESENCE_GRPC: ContainerPort = ContainerPort::Tcp(50051);
const REGISTRAR_GRPC: ContainerPort = ContainerPort::Tcp(50052);
const STARTUP: Duration = Duration::from_secs(120);
const JWKS_IN_CONTAINER: &str = "/etc/presence/jwks.json";

/// Builds the images from the current binaries, once per test process
/// (`scripts/build-images.sh` returns at once when nothing changed). The
/// binaries are built first when missing.
pub fn ensure_images() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let edge = crate::process::binary("edge");
        let profile_dir = edge.parent().expect("profile directory");
        let profile = profile_dir
            .file_name()
            .and_then(|p| p.to_str())
            .expect("profile name")
            .to_string();
        let target_dir = profile_dir.parent().expect("target directory");
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root")
            .to_path_buf();
        let status = Command::new("bash")
            .arg(root.join("scripts/build-images.sh"))
            .args(["--profile", &profile])
            .env("CARGO_TARGET_DIR", target_dir)
            .current_dir(&root)
            .status()
            .expect("running scripts/build-images.sh");
        assert!(
            status.success(),
            "scripts/build-images.sh failed: the container tests need a Docker engine"
        );
    });
}

/// One container cluster test at a time per test process: on a small
/// machine two clusters at once only make both slow.
async fn take_turn() -> OwnedMutexGuard<()> {
    static TURN: OnceLock<Arc<Mutex<()>>> = OnceLock::new();
    TURN.get_or_init(|| Arc::new(Mutex::new(())))
        .clone()
        .lock_owned()
        .await
}

/// A cluster's shape.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub presence_replicas: usize,
    pub registrar_replicas: usize,
    pub edges: usize,
    /// Deadline of the edges' gRPC calls.
    pub rpc_timeout: Duration,
    /// Redis with an append-only file synced on every write (kept in the
    /// container's own file system, which a stop and start preserves);
    /// otherwise no persistence at all.
    pub redis_persistence: bool,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            presence_replicas: 1,
            registrar_replicas: 1,
            edges: 2,
            rpc_timeout: Duration::from_millis(2000),
            redis_persistence: false,
        }
    }
}

/// A running container cluster; every container is removed when dropped.
pub struct ContainerCluster {
    /// Prefix of every container name, and the network's name.
    pub name: String,
    pub tokens: Tokens,
    pub redis: ContainerAsync<GenericImage>,
    pub presence: Vec<ContainerAsync<GenericImage>>,
    pub registrar: Vec<ContainerAsync<GenericImage>>,
    pub edges: Vec<ContainerAsync<GenericImage>>,
    edge_addrs: Vec<SocketAddr>,
    /// The edges' own addresses on the network (SIP port 5060).
    edge_network_addrs: Vec<SocketAddr>,
    /// This machine's address on the network.
    gateway: IpAddr,
    _turn: OwnedMutexGuard<()>,
}

/// The services log at `info`: readiness is read from their logs, and
/// `docker logs` of a failed run tells what happened.
fn log_level() -> String {
    "info".into()
}

/// A container of the services' image on `network`, named `name`, ready
/// when `ready` appears on its standard error, with `port` published.
fn service(
    network: &str,
    name: &str,
    ready: &str,
    port: ContainerPort,
    command: Vec<String>,
) -> ContainerRequest<GenericImage> {
    GenericImage::new(APP_IMAGE, TAG)
        .with_exposed_port(port)
        .with_wait_for(WaitFor::message_on_stderr(ready))
        .with_container_name(name)
        .with_network(network)
        .with_env_var("RUST_LOG", log_level())
        .with_env_var("LOG_FORMAT", "text")
        .with_cmd(command)
        .with_startup_timeout(STARTUP)
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

impl ContainerCluster {
    /// Starts Redis, the presence and registrar replicas, then the
    /// edges, and waits until each says it is serving.
    pub async fn start(shape: Shape) -> ContainerCluster {
        ensure_images();
        let turn = take_turn().await;
        let name = format!("presence-test-{}", hex::encode(rand::random::<[u8; 4]>()));
        let tokens = Tokens::new();
        let redis_name = format!("{name}-redis");
        let redis_url = format!("redis://{redis_name}:6379");

        let mut redis = GenericImage::new(REDIS_IMAGE, TAG)
            .with_wait_for(WaitFor::message_on_stdout("Ready to accept connections"))
            .with_container_name(&redis_name)
            .with_network(&name)
            .with_startup_timeout(STARTUP);
        if shape.redis_persistence {
            redis = redis.with_cmd(strings(&[
                "--bind",
                "0.0.0.0",
                "--port",
                "6379",
                "--protected-mode",
                "no",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                "/data",
            ]));
        }
        let redis = redis
            .start()
            .await
            .expect("starting the Redis container (scripts/build-images.sh makes its image)");

        let presence_names: Vec<String> = (0..shape.presence_replicas)
            .map(|i| format!("{name}-presence-{i}"))
            .collect();
        let mut presence_starts = Vec::new();
        for container in &presence_names {
            let request = service(
                &name,
                container,
                "presence serving gRPC",
                PRESENCE_GRPC,
                strings(&[
                    "/usr/local/bin/presence",
                    "--redis-url",
                    &redis_url,
                    "--min-expires",
                    "1",
                    "--sweep-ms",
                    "200",
                ]),
            );
            presence_starts.push(tokio::spawn(request.start()));
        }
        let registrar_names: Vec<String> = (0..shape.registrar_replicas)
            .map(|i| format!("{name}-registrar-{i}"))
            .collect();
        let mut registrar_starts = Vec::new();
        for container in &registrar_names {
            let request = service(
                &name,
                container,
                "registrar serving gRPC",
                REGISTRAR_GRPC,
                strings(&[
                    "/usr/local/bin/registrar",
                    "--redis-url",
                    &redis_url,
                    "--min-expires",
                    "1",
                    "--sweep-ms",
                    "200",
                ]),
            );
            registrar_starts.push(tokio::spawn(request.start()));
        }
        let mut presence = Vec::new();
        for start in presence_starts {
            presence.push(
                start
                    .await
                    .expect("start task")
                    .expect("starting a presence container"),
            );
        }
        let mut registrar = Vec::new();
        for start in registrar_starts {
            registrar.push(
                start
                    .await
                    .expect("start task")
                    .expect("starting a registrar container"),
            );
        }
        let registrar_urls: Vec<String> = registrar_names
            .iter()
            .map(|r| format!("http://{r}:50052"))
            .collect();

        let presence_urls: Vec<String> = presence_names
            .iter()
            .map(|p| format!("http://{p}:50051"))
            .collect();
        let jwks = std::fs::read(&tokens.jwks_path).expect("reading the JWKS");
        let host_jwks = tokens.jwks_path.display().to_string();
        let auth: Vec<String> = tokens
            .edge_args()
            .into_iter()
            .map(|a| {
                if a == host_jwks {
                    JWKS_IN_CONTAINER.to_string()
                } else {
                    a
                }
            })
            .collect();
        let mut edge_starts = Vec::new();
        for i in 0..shape.edges {
            let container = format!("{name}-edge-{i}");
            let mut command = strings(&[
                "/usr/local/bin/edge",
                "--edge-id",
                &container,
                "--presence-url",
                &presence_urls.join(","),
                "--registrar-url",
                &registrar_urls.join(","),
                "--redis-url",
                &redis_url,
                "--rpc-timeout-ms",
                &shape.rpc_timeout.as_millis().to_string(),
            ]);
            command.extend(auth.iter().cloned());
            let request = GenericImage::new(APP_IMAGE, TAG)
                .with_exposed_port(SIP)
                .with_exposed_port(ContainerPort::Tcp(5060))
                .with_wait_for(WaitFor::message_on_stderr("edge listening"))
                .with_container_name(&container)
                .with_network(&name)
                .with_env_var("RUST_LOG", log_level())
                .with_env_var("LOG_FORMAT", "text")
                .with_copy_to(JWKS_IN_CONTAINER, jwks.clone())
                .with_cmd(command)
                .with_startup_timeout(STARTUP);
            edge_starts.push(tokio::spawn(request.start()));
        }
        let mut edges = Vec::new();
        for start in edge_starts {
            edges.push(
                start
                    .await
                    .expect("start task")
                    .expect("starting an edge container"),
            );
        }
        let mut edge_addrs = Vec::new();
        let mut edge_network_addrs = Vec::new();
        for edge in &edges {
            let port = edge
                .get_host_port_ipv4(SIP)
                .await
                .expect("published SIP port");
            edge_addrs.push(SocketAddr::from(([127, 0, 0, 1], port)));
            let ip = docker_format(
                &["inspect", edge.id()],
                &format!("{{{{(index .NetworkSettings.Networks \"{name}\").IPAddress}}}}"),
            )
            .await;
            edge_network_addrs.push(SocketAddr::new(ip, 5060));
        }
        let gateway = docker_format(
            &["network", "inspect", &name],
            "{{(index .IPAM.Config 0).Gateway}}",
        )
        .await;
        ContainerCluster {
            name,
            tokens,
            redis,
            presence,
            registrar,
            edges,
            edge_addrs,
            edge_network_addrs,
            gateway,
            _turn: turn,
        }
    }

    /// Edge `i`'s own address on the network. A UA bound to [`Self::gateway`]
    /// that talks to it directly is seen by the edges at its real address,
    /// which any edge can reach — through a published port it would be seen
    /// at Docker's proxy for that edge, which dies with the edge.
    pub fn edge_on_network(&self, i: usize) -> SocketAddr {
        self.edge_network_addrs[i]
    }

    /// This machine's address on the cluster's network.
    pub fn gateway(&self) -> IpAddr {
        self.gateway
    }

    /// The URL of presence replica `i`'s gRPC API, published on 127.0.0.1.
    pub async fn presence_url(&self, i: usize) -> String {
        let port = self.presence[i]
            .get_host_port_ipv4(PRESENCE_GRPC)
            .await
            .expect("published presence port");
        format!("http://127.0.0.1:{port}")
    }

    /// The URL of registrar replica `i`'s gRPC API, published on 127.0.0.1.
    pub async fn registrar_url(&self, i: usize) -> String {
        let port = self.registrar[i]
            .get_host_port_ipv4(REGISTRAR_GRPC)
            .await
            .expect("published registrar port");
        format!("http://127.0.0.1:{port}")
    }

    /// The published SIP (UDP) address of edge `i` on 127.0.0.1.
    pub fn edge(&self, i: usize) -> SocketAddr {
        self.edge_addrs[i]
    }

    pub fn edge_addrs(&self) -> &[SocketAddr] {
        &self.edge_addrs
    }

    /// Whether every container of the cluster is still running.
    pub async fn all_running(&self) -> Vec<(String, bool)> {
        let mut states = Vec::new();
        let all = std::iter::once(&self.redis)
            .chain(self.presence.iter())
            .chain(self.registrar.iter())
            .chain(self.edges.iter());
        for container in all {
            let running = container.is_running().await.unwrap_or(false);
            states.push((container.id().to_string(), running));
        }
        states
    }
}

/// An address `docker <args> --format <format>` prints.
async fn docker_format(args: &[&str], format: &str) -> IpAddr {
    let output = tokio::process::Command::new("docker")
        .args(args)
        .args(["--format", format])
        .output()
        .await
        .expect("running docker");
    let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
    text.parse().unwrap_or_else(|_| {
        panic!(
            "docker {args:?} printed {text:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// Kills a container's processes with SIGKILL (`docker kill`), as a crash
/// or an OOM kill would.
pub async fn kill(container: &ContainerAsync<GenericImage>) {
    let output = tokio::process::Command::new("docker")
        .args(["kill", "--signal", "KILL", container.id()])
        .output()
        .await
        .expect("running docker kill");
    assert!(
        output.status.success(),
        "docker kill: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The last lines a container logged, for failure messages.
pub async fn logs(container: &ContainerAsync<GenericImage>, lines: usize) -> String {
    let output = tokio::process::Command::new("docker")
        .args(["logs", "--tail", &lines.to_string(), container.id()])
        .output()
        .await;
    match output {
        Ok(o) => format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => format!("(docker logs failed: {e})"),
    }
}

/// Waits (up to a minute) until `container` logged `line` `times` times.
pub async fn wait_for_log(container: &ContainerAsync<GenericImage>, line: &str, times: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let text = logs(container, 400).await;
        if text.matches(line).count() >= times {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{line:?} not logged {times} times:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
