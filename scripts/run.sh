#!/usr/bin/env bash
# Runs the whole presence service in one process: SIP edge on
# 127.0.0.1:5060 (UDP and TCP), presence gRPC on 127.0.0.1:50051, registrar
# gRPC on 127.0.0.1:50052, state in memory (or in Redis with --redis-url).
# With no token provider configured, development tokens are printed.
# Extra arguments go to the binary (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --release -q -p presence-node -- "$@"
