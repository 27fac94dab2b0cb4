//! Network fuzz of the edge, bounded: a real `presence-node` receives a few
//! thousand mutated SIP messages over UDP and over several TCP connections
//! (writes split at random points, connections closed abruptly, mid-message),
//! and must come out alive, without a panic in its log, still answering a
//! valid REGISTER with 200.
//!
//! The mutations are deterministic (a fixed seed; `FUZZ_EDGE_SEED` picks
//! another to explore, and the seed is printed so a failure can be replayed).
//! Seeds are the RFC 4475/5118 torture messages of `crates/sip/tests/corpus`
//! and valid REGISTER, PUBLISH and SUBSCRIBE requests; mutations flip bits,
//! truncate, splice pieces of other seeds, duplicate header lines, claim huge
//! Content-Lengths and flood CRLFs. Splices are shorter than a bearer token,
//! so no mutated SUBSCRIBE can borrow a valid token and start sending NOTIFYs.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cluster_tests::cluster::Tokens;
use cluster_tests::free_port;
use cluster_tests::process::{binary, wait_for_tcp};
use cluster_tests::ua::{pidf, Ua};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpStream, UdpSocket};

const UDP_CASES: usize = 2500;
const TCP_CONNECTIONS: usize = 6;
const TCP_CASES_PER_CONNECTION: usize = 250;
/// Longest piece of another seed spliced in: shorter than any bearer token.
const MAX_SPLICE: usize = 120;

/// xorshift64*: deterministic per seed, no dependencies.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const HUGE_LENGTHS: [&str; 5] = [
    "4294967296",
    "18446744073709551616",
    "99999999999999999999999",
    "-1",
    "2147483647",
];

/// One mutated message from `seeds`.
fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut input = seeds[rng.below(seeds.len())].clone();
    for _ in 0..=rng.below(4) {
        let len = input.len();
        let at = rng.below(len + 1);
        match rng.below(8) {
            0 if len > 0 => {
                for _ in 0..=rng.below(8) {
                    let i = rng.below(len);
                    input[i] ^= 1 << rng.below(8);
                }
            }
            1 => input.truncate(at),
            2 => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len());
                let end = (from + rng.below(MAX_SPLICE)).min(other.len());
                input.splice(at..at, other[from..end].iter().copied());
            }
            3 => {
                // Duplicate one header line, up to a few hundred times.
                let lines: Vec<(usize, usize)> = line_spans(&input);
                if let Some(&(start, end)) = lines.get(1 + rng.below(lines.len().max(2) - 1)) {
                    let line = input[start..end].to_vec();
                    let times = 1 + rng.below(300);
                    let copies: Vec<u8> = line
                        .iter()
                        .copied()
                        .cycle()
                        .take(line.len() * times)
                        .collect();
                    input.splice(end..end, copies);
                }
            }
            4 => {
                let huge = HUGE_LENGTHS[rng.below(HUGE_LENGTHS.len())];
                let header = format!("Content-Length: {huge}\r\n");
                let place = header_end(&input).map_or(at, |end| end.saturating_sub(2));
                input.splice(place..place, header.bytes());
            }
            5 => {
                let flood = b"\r\n".repeat(1 + rng.below(3000));
                input.splice(at..at, flood);
            }
            6 if len > 0 => {
                // Cut a random range out.
                let end = (at + rng.below(200)).min(len);
                input.drain(at..end);
            }
            _ => {
                let delimiters = b",;:\"<>[]@%\\ \t\r\n=/?\0";
                input.insert(at, delimiters[rng.below(delimiters.len())]);
            }
        }
    }
    // Half the messages get a fresh branch, so they start new transactions
    // instead of being absorbed as retransmissions.
    if rng.below(2) == 0 {
        if let Some(at) = find(&input, b"z9hG4bK") {
            let unique = format!("{:x}", rng.next());
            input.splice(at + 7..at + 7, unique.bytes());
        }
    }
    input.truncate(60_000);
    input
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn header_end(input: &[u8]) -> Option<usize> {
    find(input, b"\r\n\r\n").map(|i| i + 4)
}

/// (start, end) of each CRLF-terminated line, end after the CRLF.
fn line_spans(input: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = 0;
    while let Some(i) = find(&input[start..], b"\r\n") {
        let end = start + i + 2;
        if end - start == 2 {
            break;
        }
        spans.push((start, end));
        start = end;
    }
    spans
}

fn corpus() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/sip/tests/corpus");
    let mut seeds = Vec::new();
    for dir in ["rfc4475", "rfc5118"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
            .expect("corpus directory")
            .map(|e| e.expect("corpus entry").path())
            .collect();
        // Directory order differs between file systems; the run must not.
        files.sort();
        for file in files {
            seeds.push(std::fs::read(&file).expect("corpus file"));
        }
    }
    assert!(seeds.len() > 40, "the RFC 4475/5118 corpus is missing");
    seeds
}

fn valid_requests(tokens: &Tokens, sink: SocketAddr) -> Vec<Vec<u8>> {
    let register_token = tokens.token_with_scopes("fuzz-reg@example.com", &["sip:register"]);
    let publish_token = tokens.token_with_scopes("fuzz-pub@example.com", &["sip:presence"]);
    let body = pidf("fuzz-pub@example.com", "open", "fuzzing");
    let register = format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP {sink};branch=z9hG4bKreg;rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:fuzz-reg@example.com>;tag=reg1\r\n\
         To: <sip:fuzz-reg@example.com>\r\n\
         Call-ID: reg-fuzz@127.0.0.1\r\n\
         CSeq: 1 REGISTER\r\n\
         Contact: <sip:fuzz-reg@{sink}>\r\n\
         Expires: 60\r\n\
         Authorization: Bearer {register_token}\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let publish = format!(
        "PUBLISH sip:fuzz-pub@example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP {sink};branch=z9hG4bKpub;rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:fuzz-pub@example.com>;tag=pub1\r\n\
         To: <sip:fuzz-pub@example.com>\r\n\
         Call-ID: pub-fuzz@127.0.0.1\r\n\
         CSeq: 1 PUBLISH\r\n\
         Event: presence\r\n\
         Expires: 60\r\n\
         Authorization: Bearer {publish_token}\r\n\
         Content-Type: application/pidf+xml\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    // No token: refused before a dialog exists, so no NOTIFY ever leaves.
    let subscribe = format!(
        "SUBSCRIBE sip:fuzz-pub@example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP {sink};branch=z9hG4bKsub;rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:watcher@example.com>;tag=sub1\r\n\
         To: <sip:fuzz-pub@example.com>\r\n\
         Call-ID: sub-fuzz@127.0.0.1\r\n\
         CSeq: 1 SUBSCRIBE\r\n\
         Contact: <sip:watcher@{sink}>\r\n\
         Event: presence\r\n\
         Accept: application/pidf+xml\r\n\
         Expires: 60\r\n\
         Content-Length: 0\r\n\r\n"
    );
    vec![
        register.into_bytes(),
        publish.into_bytes(),
        subscribe.into_bytes(),
    ]
}

/// The node with its stderr in a file, so the log can be searched for panics.
struct Node {
    child: Child,
    log: PathBuf,
    sip: SocketAddr,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_node(tokens: &Tokens, dir: &Path) -> Node {
    let sip_port = free_port();
    let presence_port = free_port();
    let registrar_port = free_port();
    let log = dir.join("presence-node.log");
    let mut args = vec![
        "--udp".to_string(),
        format!("127.0.0.1:{sip_port}"),
        "--tcp".into(),
        format!("127.0.0.1:{sip_port}"),
        "--presence-listen".into(),
        format!("127.0.0.1:{presence_port}"),
        "--registrar-listen".into(),
        format!("127.0.0.1:{registrar_port}"),
    ];
    args.extend(tokens.edge_args());
    let child = Command::new(binary("presence-node"))
        .args(&args)
        .env("RUST_LOG", "warn")
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(File::create(&log).expect("log file")))
        .spawn()
        .expect("starting presence-node");
    wait_for_tcp(sip_port, Duration::from_secs(60));
    Node {
        child,
        log,
        sip: SocketAddr::from(([127, 0, 0, 1], sip_port)),
    }
}

impl Node {
    fn assert_healthy(&mut self, after: &str) {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        assert!(
            !log.contains("panicked"),
            "presence-node panicked {after}:\n{log}"
        );
        assert!(
            matches!(self.child.try_wait(), Ok(None)),
            "presence-node exited {after}:\n{log}"
        );
    }
}

/// Mutated datagrams; answers are drained so the node never blocks on us.
async fn fuzz_udp(rng: &mut Rng, seeds: &[Vec<u8>], socket: &UdpSocket, node: SocketAddr) -> usize {
    let mut sent = 0;
    let mut buffer = vec![0u8; 65_536];
    for case in 0..UDP_CASES {
        let message = mutate(rng, seeds);
        // A datagram larger than the loopback MTU allows is refused locally.
        if socket.send_to(&message, node).await.is_ok() {
            sent += 1;
        }
        while let Ok((_, _)) = socket.try_recv_from(&mut buffer) {}
        if case % 200 == 199 {
            // Let the node drain its socket instead of the kernel dropping.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    sent
}

/// One TCP connection's share: messages written in random pieces, the
/// connection sometimes cut mid-message and replaced by a new one.
async fn fuzz_tcp(mut rng: Rng, seeds: Vec<Vec<u8>>, node: SocketAddr) -> (usize, usize) {
    let mut connections = 0;
    let mut written = 0;
    let mut stream: Option<OwnedWriteHalf> = None;
    let mut drain: Option<tokio::task::JoinHandle<()>> = None;
    for _ in 0..TCP_CASES_PER_CONNECTION {
        if stream.is_none() {
            let Ok(connected) = TcpStream::connect(node).await else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            connections += 1;
            let (mut read, write) = connected.into_split();
            drain = Some(tokio::spawn(async move {
                let mut buffer = vec![0u8; 16_384];
                while matches!(read.read(&mut buffer).await, Ok(n) if n > 0) {}
            }));
            stream = Some(write);
        }
        let Some(open) = stream.as_mut() else {
            continue;
        };
        let message = mutate(&mut rng, &seeds);
        let cut_short = rng.below(20) == 0;
        let limit = if cut_short {
            rng.below(message.len() + 1)
        } else {
            message.len()
        };
        let mut at = 0;
        let mut failed = false;
        while at < limit {
            let piece = (1 + rng.below(512)).min(limit - at);
            if open.write_all(&message[at..at + piece]).await.is_err() {
                failed = true;
                break;
            }
            at += piece;
            if rng.below(4) == 0 {
                tokio::task::yield_now().await;
            }
        }
        written += 1;
        if failed || cut_short {
            // Abrupt close: dropped mid-message (or after the node closed it).
            stream = None;
            if let Some(task) = drain.take() {
                task.abort();
            }
        }
    }
    drop(stream);
    if let Some(task) = drain.take() {
        task.abort();
    }
    (connections, written)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_sip_over_udp_and_tcp_leaves_the_edge_serving() {
    let started = Instant::now();
    let seed = std::env::var("FUZZ_EDGE_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0x5EED_F0CC_ED6E_0001);
    eprintln!("fuzz_edge: seed {seed} (FUZZ_EDGE_SEED replays it)");
    let tokens = Tokens::new();
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut node = start_node(&tokens, dir.path());

    let sink = UdpSocket::bind("127.0.0.1:0").await.expect("UDP socket");
    let sink_addr = sink.local_addr().expect("local address");
    let mut seeds = corpus();
    seeds.extend(valid_requests(&tokens, sink_addr));

    let mut rng = Rng(seed | 1);
    let sent = fuzz_udp(&mut rng, &seeds, &sink, node.sip).await;
    assert!(sent > UDP_CASES / 2, "only {sent} datagrams could be sent");
    node.assert_healthy("after the UDP fuzz");

    let tasks: Vec<_> = (0..TCP_CONNECTIONS)
        .map(|i| {
            let rng = Rng((seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1);
            tokio::spawn(fuzz_tcp(rng, seeds.clone(), node.sip))
        })
        .collect();
    let mut connections = 0;
    for task in tasks {
        let (opened, written) = task.await.expect("TCP fuzz task");
        assert_eq!(
            written, TCP_CASES_PER_CONNECTION,
            "a TCP fuzzer could not connect"
        );
        connections += opened;
    }
    assert!(connections >= TCP_CONNECTIONS, "{connections} connections");
    // Give the node a moment to work through what is still buffered.
    tokio::time::sleep(Duration::from_millis(500)).await;
    node.assert_healthy("after the TCP fuzz");

    let survivor = tokens.token_with_scopes("survivor@example.com", &["sip:register"]);
    let mut udp = Ua::udp("survivor@example.com", node.sip).await;
    assert_eq!(udp.register(Some(&survivor), 60).await.status(), 200);
    let mut tcp = Ua::tcp("survivor@example.com", node.sip).await;
    assert_eq!(tcp.register(Some(&survivor), 60).await.status(), 200);
    node.assert_healthy("after the valid REGISTERs");
    eprintln!(
        "fuzz_edge: {sent} datagrams, {} TCP messages over {connections} connections in {:?}",
        TCP_CONNECTIONS * TCP_CASES_PER_CONNECTION,
        started.elapsed()
    );
}
