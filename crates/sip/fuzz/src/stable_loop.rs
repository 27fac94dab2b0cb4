//! Runs the fuzz harness as a bounded mutation loop on a stable toolchain, for machines where
//! cargo-fuzz (which needs nightly) is unavailable.
//!
//! Usage: `stable_loop <seconds> <seed-dir>...`. Inputs are seeds mutated with bit flips,
//! byte insertions/deletions, truncation, chunk duplication, splicing and SIP delimiter
//! insertion. A panicking input is written to `artifacts/stable_loop/` and the process exits 1.

use std::panic;
use std::path::Path;
use std::time::{Duration, Instant};

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

const DELIMITERS: &[u8] = b",;:\"<>[]@%\\ \t\r\n=/?";

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], input: &mut Vec<u8>) {
    for _ in 0..=rng.below(8) {
        let len = input.len();
        let at = rng.below(len + 1);
        match rng.below(9) {
            0 if len > 0 => input[at.min(len - 1)] ^= 1 << rng.below(8),
            1 => input.insert(at, rng.next() as u8),
            2 if len > 0 => {
                input.remove(at.min(len - 1));
            }
            3 => input.truncate(at),
            4 => {
                let end = (at + rng.below(64)).min(len);
                let chunk = input[at..end].to_vec();
                input.splice(at..at, chunk);
            }
            5 => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len());
                let end = (from + rng.below(128)).min(other.len());
                input.splice(at..at, other[from..end].iter().copied());
            }
            6 => input.insert(at, DELIMITERS[rng.below(DELIMITERS.len())]),
            7 => {
                // Large numbers where scalars are expected.
                input.splice(at..at, b"99999999999999999999".iter().copied());
            }
            _ => input.insert(at, [b'\r', b'\n', b' '][rng.below(3)]),
        }
    }
}

fn load_seeds(dirs: &[String]) -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for dir in dirs {
        let mut stack = vec![Path::new(dir).to_path_buf()];
        while let Some(path) = stack.pop() {
            if path.is_dir() {
                if let Ok(entries) = std::fs::read_dir(&path) {
                    stack.extend(entries.flatten().map(|e| e.path()));
                }
            } else if let Ok(bytes) = std::fs::read(&path) {
                seeds.push(bytes);
            }
        }
    }
    if seeds.is_empty() {
        seeds.push(
            b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:a@b>\r\n\
From: <sip:a@b>;tag=1\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
                .to_vec(),
        );
    }
    seeds
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds: u64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(120);
    let seeds = load_seeds(args.get(1..).unwrap_or_default());
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ u64::from(std::process::id()));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut runs: u64 = 0;
    while Instant::now() < deadline {
        for _ in 0..256 {
            let mut input = seeds[rng.below(seeds.len())].clone();
            if rng.below(16) == 0 {
                input = (0..rng.below(256)).map(|_| rng.next() as u8).collect();
            } else {
                mutate(&mut rng, &seeds, &mut input);
            }
            if panic::catch_unwind(|| sip_fuzz::check(&input)).is_err() {
                let dir = Path::new("artifacts/stable_loop");
                let _ = std::fs::create_dir_all(dir);
                let path = dir.join(format!("crash-{runs}"));
                let _ = std::fs::write(&path, &input);
                eprintln!("crash after {runs} runs, input saved to {}", path.display());
                std::process::exit(1);
            }
            runs += 1;
        }
    }
    println!("stable_loop: {runs} inputs in {seconds} s, no failures");
}
