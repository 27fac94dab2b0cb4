#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian machine.
#
# Installs what the tests need from Debian packages when missing
# (redis-server, sip-tester for sipp, baresip-core and linphone-cli for the
# real-phone tests), builds the workspace and runs every test. Anything that
# cannot be installed is an error, never a skip.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }

missing=()
need redis-server || missing+=(redis-server)
need sipp || missing+=(sip-tester)
# The phones of tests/tests/phones.rs (baresip 1.0 and linphonec 5.1 on
# Debian 12); without recommends, no desktop or sound server comes along.
need baresip || missing+=(baresip-core)
need linphonec || missing+=(linphone-cli)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
for tool in redis-server sipp baresip linphonec cargo; do
  need "$tool" || { echo "error: $tool is required and could not be installed" >&2; exit 1; }
done

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# A one-shot build gains nothing from incremental state, which would only
# double the workspace crates' share of the target directory.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# The Kubernetes manifests: every overlay rendered and validated against the
# Kubernetes schemas, the dashboard against the metrics served (seconds).
bash scripts/check-k8s.sh
cargo fmt --all -- --check
# Dependency policy (deny.toml): licences, bans (one crypto stack, the
# duplicates third-party crates force) and sources (crates.io only). Not
# advisories: their database is on github.com, which CI cannot reach (see
# deny.toml). The install is a few minutes, once.
need cargo-deny || cargo install cargo-deny --version 0.20.2 --locked
cargo deny check bans licenses sources
cargo clippy --workspace --all-targets -- -D warnings
# The workspace tests start the service binaries: build them first.
cargo build --workspace --bins
# The container tests start the project's own images, built offline from
# those binaries (a second when nothing changed; fails when Docker is missing).
bash scripts/build-images.sh
cargo test --workspace --no-fail-fast -- --test-threads=2
# The SIP parser under random mutation for a bounded time, on the stable
# toolchain (FUZZ_ENGINE=stable: nothing is installed).
FUZZ_ENGINE=stable FUZZ_SECONDS="${FUZZ_SECONDS:-30}" bash scripts/fuzz-sip.sh
