#!/usr/bin/env bash
# Runs the whole presence service in one process: SIP edge on
# 127.0.0.1:5060 (UDP and TCP), presence gRPC on 127.0.0.1:50051, registrar
# gRPC on 127.0.0.1:50052, state in memory (or in Redis with --redis-url).
# With no token provider configured, development tokens are printed.
# Extra arguments go to the binary (see --help).
#
# It builds what `cargo build --release --workspace --bins` builds (the
# README's build command), so after that command nothing is rebuilt: building
# one package alone would select other dependency features and rebuild them.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --bins -q
exec target/release/presence-node "$@"
