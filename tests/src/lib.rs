//! Harness for the workspace-level tests: starts the project's real binaries
//! against a real `redis-server`, and talks SIP to them over real sockets.
//!
//! * [`process`] — child processes that die with the test.
//! * [`cluster`] — a whole cluster (Redis, presence, registrar, N edges) or
//!   a single-process node.
//! * [`ua`] — a small SIP user agent for tests, built on the `sip` crate.
//! * [`containers`] — the same cluster from the project's container images
//!   (testcontainers, a private Docker network), for failure tests.
//! * [`workload`] — publishers and watchers under load, and the check of
//!   every watcher's NOTIFY sequence.

pub mod cluster;
pub mod containers;
pub mod process;
pub mod ua;
pub mod workload;

/// A loopback port free for both UDP and TCP at the time of asking.
pub fn free_port() -> u16 {
    loop {
        let Ok(tcp) = std::net::TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(addr) = tcp.local_addr() else { continue };
        if std::net::UdpSocket::bind(addr).is_ok() {
            return addr.port();
        }
    }
}
