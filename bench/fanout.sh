#!/usr/bin/env bash
# Fan-out side by side: one publisher and N watchers (`loadgen fanout`)
# against Kamailio, presence-node and the cluster, each started fresh on
# loopback without authentication (bench/servers/*.sh), paced and burst.
# Writes one table: time to deliver a change to every watcher (median and
# worst over the changes), PUBLISH -> NOTIFY latency, UDP receive drops at
# the server, and whether every NOTIFY check passed.
#
#   bench/fanout.sh [--watchers 1000] [--changes 50] [--pace-ms 200]
#                   [--systems "kamailio presence-node cluster"] [--bin-dir target/release] [--out FILE]
#
# --bin-dir must hold loadgen and the servers' binaries
# (`cargo build --release --bins`).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=servers/lib.sh
. "$here/servers/lib.sh"

watchers=1000
changes=50
pace_ms=200
systems="kamailio presence-node cluster"
bin_dir="$repo/target/release"
out=""
while [ $# -gt 0 ]; do
  case $1 in
    --watchers) watchers=$2; shift 2 ;;
    --changes) changes=$2; shift 2 ;;
    --pace-ms) pace_ms=$2; shift 2 ;;
    --systems) systems=$2; shift 2 ;;
    --bin-dir) bin_dir=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) die "unknown option $1 (see the header of $0)" ;;
  esac
done
[ -x "$bin_dir/loadgen" ] || die "$bin_dir/loadgen is missing (cargo build --release --bins)"
ensure_packages python3:python3

work=$(mktemp -d /tmp/bench-fanout.XXXXXX)
current=""
cleanup() {
  if [ -n "$current" ]; then
    bash "$here/servers/$current.sh" stop --run-dir "$work/$current" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rows=()
for system in $systems; do
  for mode in paced burst; do
    mkdir -p "$work/$system"
    current=$system
    # The settings of bench/README.md ("The systems and their settings").
    # Ports of their own, so a ladder of compare.sh may run meanwhile.
    case $system in
      kamailio) ports=(--port 5072) ;;
      presence-node) ports=(--port 5086 --grpc-ports 50191,50192) ;;
      cluster) ports=(--port 5087 --redis-port 6395 --grpc-ports 50193,50194) ;;
      *) die "unknown system $system" ;;
    esac
    bash "$here/servers/$system.sh" start --run-dir "$work/$system" --bin-dir "$bin_dir" \
      --auth none "${ports[@]}" >/dev/null
    # shellcheck disable=SC1091
    target=$(. "$work/$system/server.env" && echo "$TARGET")
    pacing=(--pace-ms "$pace_ms")
    [ "$mode" = burst ] && pacing=(--burst)
    log "$system, $mode: $watchers watchers, $changes changes -> $target"
    status=0
    "$bin_dir/loadgen" fanout --target "$target" --watchers "$watchers" --changes "$changes" \
      "${pacing[@]}" --no-auth --json >"$work/report.json" 2>"$work/report.txt" || status=$?
    bash "$here/servers/$system.sh" stop --run-dir "$work/$system" >/dev/null
    current=""
    rm -rf "${work:?}/$system"
    if [ ! -s "$work/report.json" ]; then
      tail -n 20 "$work/report.txt" >&2
      rows+=("| $system | $mode | run failed (exit $status) | | | | | | |")
      continue
    fi
    rows+=("$(python3 - "$work/report.json" "$system" "$mode" "$status" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
system, mode, status = sys.argv[2], sys.argv[3], sys.argv[4]

def ms(value):
    return "—" if value is None else f"{value:.1f}"

delivery = report.get("delivery") or {}
latency = report["notify"]["latency"]
violations = sum(report["checks"]["violations"].values())
drops = report["kernel_drops"].get("target")
complete = f"{delivery.get('complete', 0)}/{delivery.get('changes', 0)}"
passed = "yes" if report["passed"] else (
    f"no: {violations} violations, {report['failed_requests']} failed requests")
print(f"| {system} | {mode} | {ms(delivery.get('all_watchers_median_ms'))} "
      f"| {ms(delivery.get('all_watchers_max_ms'))} | {complete} "
      f"| {ms(latency['p50_ms'])} | {ms(latency['p99_ms'])} "
      f"| {drops if drops is not None else '—'} | {passed} |")
EOF
)")
  done
done

{
  echo "Fan-out: $watchers watchers of one presentity, $changes changes (paced every ${pace_ms} ms, or burst), UDP, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, commit $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo
  echo "| system | mode | change to all watchers, median ms | worst ms | changes complete | PUBLISH→NOTIFY p50 ms | p99 ms | UDP drops at the server | every check passed |"
  echo "|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} | tee "${out:-/dev/null}"
