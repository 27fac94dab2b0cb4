#!/usr/bin/env bash
# Fuzzes the SIP parser (crates/sip) for a bounded time: FUZZ_SECONDS, default 120.
#
# FUZZ_ENGINE chooses how:
#   stable  the harness as a random mutation loop on the stable toolchain; nothing is installed.
#           The default when CI is set (scripts/test.sh uses it): CI must not depend on fetching a
#           toolchain.
#   auto    (the default elsewhere) with a nightly toolchain (installed here when missing and
#           installable) the cargo-fuzz target `parse`, installing cargo-fuzz if needed; without
#           one, the stable loop.
# Seeds are the RFC 4475/5118 torture messages. Exits non-zero when a failing input is found
# (saved under crates/sip/fuzz/artifacts/).
set -euo pipefail

FUZZ_SECONDS="${FUZZ_SECONDS:-120}"
if [ -n "${CI:-}" ] && [ "${CI}" != "false" ]; then
    FUZZ_ENGINE="${FUZZ_ENGINE:-stable}"
else
    FUZZ_ENGINE="${FUZZ_ENGINE:-auto}"
fi
case "$FUZZ_ENGINE" in
    stable | auto) ;;
    *) echo "fuzz-sip: FUZZ_ENGINE must be stable or auto, not $FUZZ_ENGINE" >&2; exit 2 ;;
esac
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
FUZZ_DIR="$ROOT/crates/sip/fuzz"
SEEDS="$ROOT/crates/sip/tests/corpus"
cd "$FUZZ_DIR"

stable_loop() {
    echo "fuzz-sip: stable mutation loop for ${FUZZ_SECONDS}s ($1)"
    exec cargo run --release --no-default-features --bin stable_loop -- "$FUZZ_SECONDS" "$SEEDS"
}

[ "$FUZZ_ENGINE" = stable ] && stable_loop "FUZZ_ENGINE=stable"

have_nightly() {
    command -v rustup >/dev/null 2>&1 && rustup toolchain list 2>/dev/null | grep -q '^nightly'
}

if ! have_nightly && command -v rustup >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal >/dev/null 2>&1 || true
fi

if have_nightly && ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked || true
fi

if have_nightly && command -v cargo-fuzz >/dev/null 2>&1; then
    mkdir -p corpus/parse
    cp "$SEEDS"/rfc4475/* "$SEEDS"/rfc5118/* corpus/parse/
    echo "fuzz-sip: cargo fuzz (nightly) for ${FUZZ_SECONDS}s"
    exec cargo +nightly fuzz run parse corpus/parse -- \
        -max_total_time="$FUZZ_SECONDS" -max_len=8192 -print_final_stats=1
fi

stable_loop "no nightly toolchain or cargo-fuzz"
