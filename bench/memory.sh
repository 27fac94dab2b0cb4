#!/usr/bin/env bash
# Memory per registration, publication and subscription, held by an edge and
# by Redis: starts the cluster on loopback (bench/servers/cluster.sh, no
# authentication), then makes N of each with sipp at a steady rate and reads
# the edge's resident memory (/proc) and Redis's used_memory (INFO memory)
# before and after each step.
#
#   bench/memory.sh [--count 100000] [--rate 4000] [--settle 40] [--bin-dir target/release] [--out FILE]
#
# Steps, each for N distinct users (user000001@example.com ...):
#   1. REGISTER (Expires 300): a bindings record per AOR, and - registration-
#      driven presence being on by default - a `registration` publication.
#   2. PUBLISH (initial, Expires 300, a 230-byte PIDF document).
#   3. SUBSCRIBE to one's own presence (Expires 3600), held: the edge keeps
#      the dialog (and a channel watch per presentity), Redis the dialog
#      record, its schedule entry and the edge's ownership index entry.
# The figures are deltas divided by N (bytes per item), rounded, read
# --settle seconds (default 40) after each step: an edge keeps every
# completed server transaction (with its response, to answer
# retransmissions) for 32 s, which is not state it holds. What the edge
# shows for registrations and publications, which it does not hold, is what
# its allocator kept of those transient buffers.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=servers/lib.sh
. "$here/servers/lib.sh"

count=100000
rate=4000
bin_dir="$repo/target/release"
out=""
port=5084
redis_port=6393
settle=40
while [ $# -gt 0 ]; do
  case $1 in
    --count) count=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --bin-dir) bin_dir=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --redis-port) redis_port=$2; shift 2 ;;
    --settle) settle=$2; shift 2 ;;
    *) die "unknown option $1 (see the header of $0)" ;;
  esac
done
ensure_packages sipp:sip-tester redis-server:redis-server redis-cli:redis-tools

work=$(mktemp -d /tmp/bench-memory.XXXXXX)
run_dir="$work/cluster"
mkdir -p "$run_dir"
cleanup() {
  bash "$here/servers/cluster.sh" stop --run-dir "$run_dir" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bash "$here/servers/cluster.sh" start --run-dir "$run_dir" --bin-dir "$bin_dir" \
  --port "$port" --redis-port "$redis_port" --grpc-ports 50183,50184 --auth none >/dev/null
edge_pid=$(awk '$1 == "edge" {print $2}' "$run_dir/pids")
[ -n "$edge_pid" ] || die "no edge PID in $run_dir/pids"

inf="$work/users.csv"
awk -v n="$count" 'BEGIN { print "SEQUENTIAL"; for (i = 1; i <= n; i++) printf "user%06d;example.com;-\n", i }' >"$inf"

edge_rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$edge_pid/status"; }
redis_used() { redis-cli -p "$redis_port" info memory | awk -F: '/^used_memory:/ {print $2 + 0}'; }

# Runs one scenario for every user of the injection file; fails unless
# every call succeeded.
run_sipp() {
  local scenario=$1 seconds
  seconds=$((count / rate + 60))
  local log="$work/$scenario.log"
  if ! timeout $((seconds + 30)) sipp -sf "$here/sipp/$scenario-noauth.xml" -inf "$inf" \
      -t u1 -i 127.0.0.1 -r "$rate" -m "$count" -nostdin -timeout "${seconds}s" \
      -timeout_error -trace_err -error_file "$work/$scenario-errors.log" \
      "127.0.0.1:$port" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    head -n 40 "$work/$scenario-errors.log" >&2 2>/dev/null || true
    die "sipp $scenario did not complete every call"
  fi
}

results=()
measure() {
  local name=$1 scenario=$2 rss0 used0 rss1 used1
  rss0=$(edge_rss_kb)
  used0=$(redis_used)
  log "$name: $count calls at $rate/s"
  run_sipp "$scenario"
  sleep "$settle"
  rss1=$(edge_rss_kb)
  used1=$(redis_used)
  results+=("$(printf '| %s | %d | %d | %d | %d |' "$name" \
    $(((rss1 - rss0) * 1024 / count)) $(((used1 - used0) / count)) \
    $((rss1 / 1024)) $((used1 / 1048576)))")
}

measure registration register
measure publication publish
measure subscription subscribe-hold

{
  echo "Memory per item, $count of each ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r), commit $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown))"
  echo
  echo "| item | edge RSS bytes per item | Redis used_memory bytes per item | edge RSS after (MB) | Redis used_memory after (MB) |"
  echo "|---|---|---|---|---|"
  printf '%s\n' "${results[@]}"
} | tee "${out:-/dev/null}"
