#!/usr/bin/env bash
# What an edge's memory per held subscription is made of: runs the cluster
# on loopback (bench/servers/cluster.sh, no authentication) with the edge
# under heaptrack, holds N subscriptions (sipp/subscribe-hold.xml, each user
# watching itself), waits for the completed transactions to go, then stops
# the edge with SIGKILL so that what it still holds is what heaptrack calls
# leaked, and prints the live bytes per subscription by the code that
# allocated them.
#
#   bench/heap.sh [--count 20000] [--rate 2000] [--settle 40] [--bin-dir target/release]
#
# The edge must allocate with the system's malloc, which heaptrack
# intercepts (mimalloc is not seen): the script builds one with
#   cargo build --release -p edge --features runtime/system-allocator --target-dir target/heap
# unless target/heap/release/edge is newer than the sources. Presence and
# registrar come from --bin-dir. The heaptrack file and the folded stacks
# are left in the output directory it prints.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=servers/lib.sh
. "$here/servers/lib.sh"

count=20000
rate=2000
settle=40
bin_dir="$repo/target/release"
port=5086
redis_port=6396
while [ $# -gt 0 ]; do
  case $1 in
    --count) count=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --settle) settle=$2; shift 2 ;;
    --bin-dir) bin_dir=$2; shift 2 ;;
    *) die "unknown option $1 (see the header of $0)" ;;
  esac
done
ensure_packages sipp:sip-tester redis-server:redis-server heaptrack:heaptrack \
  heaptrack_print:heaptrack python3:python3
[ -x "$bin_dir/presence" ] && [ -x "$bin_dir/registrar" ] ||
  die "no presence/registrar in $bin_dir (cargo build --release --bins)"

(cd "$repo" && cargo build --release -q -p edge --features runtime/system-allocator --target-dir target/heap)
heap_edge="$repo/target/heap/release/edge"

out=$(mktemp -d /tmp/bench-heap.XXXXXX)
bins="$out/bin"
run_dir="$out/cluster"
mkdir -p "$bins" "$run_dir"
ln -s "$bin_dir/presence" "$bins/presence"
ln -s "$bin_dir/registrar" "$bins/registrar"
# cluster.sh starts "$bin_dir/edge": here, the edge under heaptrack.
cat >"$bins/edge" <<EOF
#!/bin/sh
exec heaptrack -o "$out/edge" "$heap_edge" "\$@"
EOF
chmod +x "$bins/edge"
cleanup() { bash "$here/servers/cluster.sh" stop --run-dir "$run_dir" >/dev/null 2>&1 || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM

bash "$here/servers/cluster.sh" start --run-dir "$run_dir" --bin-dir "$bins" \
  --port "$port" --redis-port "$redis_port" --grpc-ports 50185,50186 --auth none >/dev/null
inf="$out/users.csv"
awk -v n="$count" 'BEGIN { print "SEQUENTIAL"; for (i = 1; i <= n; i++) printf "heap%06d;example.com;-\n", i }' >"$inf"
log "holding $count subscriptions ($rate/s)"
seconds=$((count / rate + 60))
timeout $((seconds + 30)) sipp -sf "$here/sipp/subscribe-hold-noauth.xml" -inf "$inf" \
  -t u1 -i 127.0.0.1 -r "$rate" -m "$count" -nostdin -timeout "${seconds}s" -timeout_error \
  "127.0.0.1:$port" >"$out/sipp.log" 2>&1 || { tail -n 20 "$out/sipp.log" >&2; die "sipp failed"; }
log "waiting ${settle}s for completed transactions to go"
sleep "$settle"
edge_pid=$(pgrep -f "^$heap_edge" | head -n 1)
[ -n "$edge_pid" ] || die "the edge under heaptrack is not running"
rss_kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$edge_pid/status")
kill -KILL "$edge_pid"
sleep 3
data=""
for f in "$out"/edge*.zst "$out"/edge*.gz; do
  [ -e "$f" ] && { data=$f; break; }
done
[ -n "$data" ] || die "heaptrack wrote nothing in $out"
heaptrack_print -f "$data" --print-flamegraph "$out/live.folded" --flamegraph-cost-type leaked >/dev/null 2>&1
echo "edge RSS before SIGKILL (heaptrack and the system allocator included): $((rss_kb * 1024 / count)) bytes per subscription"
python3 - "$out/live.folded" "$count" <<'EOF'
import collections, re, sys
path, count = sys.argv[1], int(sys.argv[2])
total, sites = 0, collections.Counter()
for line in open(path):
    stack, _, n = line.rstrip().rpartition(" ")
    n = int(n)
    total += n
    frames = [re.sub(r"::h[0-9a-f]{16}", "", f) for f in stack.split(";")]
    ours = [f for f in frames if re.match(r"(edge|store|contract|sip|redis)::", f)]
    sites[(ours[-1] if ours else "(runtime, libraries)")[:110]] += n
print(f"live heap: {total / count:.0f} bytes per subscription ({total / 1e6:.1f} MB)")
print("| bytes per subscription | allocated under |")
print("|---|---|")
for site, n in sites.most_common(12):
    print(f"| {n / count:.0f} | `{site}` |")
EOF
echo "(heaptrack data and folded stacks: $out)"
