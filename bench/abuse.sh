#!/usr/bin/env bash
# One user flooding, another user's PUBLISH latency: whether the per-client
# limits keep a victim served while an attacker sends thousands of initial
# PUBLISHes (or SUBSCRIBEs) a second for its own presentity.
#
#   bench/abuse.sh [--seconds 15] [--attack-rate 3000] [--victim-rate 25]
#                  [--rows "alone publish subscribe publish-unlimited subscribe-unlimited"]
#                  [--bin-dir target/release] [--out DIR]
#
# Every row starts presence-node fresh (in-memory backend,
# --insecure-no-auth: the From header is the identity, as a token's subject
# would be) on loopback, SIP 5096, gRPC 50198/50199, metrics 9196, and runs:
#
#   * the victim (Python, UDP): one initial PUBLISH, then a modifying
#     PUBLISH (SIP-If-Match, new PIDF body) every 1/victim-rate s; after 2 s
#     of warm-up, the latency of each (send -> 200, with RFC 3261
#     retransmissions after 500 ms, 1 s, 2 s; lost after 8 s) for --seconds;
#   * the attacker (sipp, same address, another identity), from the
#     victim's start to its end: bench/sipp/publish-noauth.xml (initial
#     PUBLISHes, one new publication each) or subscribe-hold-noauth.xml
#     (new SUBSCRIBEs, each a dialog held) for its own presentity at
#     --attack-rate calls/s.
#
# Rows: `alone` (no attacker), `publish`, `subscribe` (default limits),
# `publish-unlimited`, `subscribe-unlimited` (the same floods with the
# identity rate limit off, `--rate-per-identity 0`: what the edge limit
# buys; the presence caps still apply). The table (DIR/summary.md) has the
# victim's median, p99 and worst latency, each median and p99 against the
# `alone` row, and what became of the attacker's requests (the node's
# counters: answered 2xx, refused by an edge limit, refused by a presence
# cap). No assertion: the figures go to BENCHMARKS.md ("Abuse").
#
# Bounded: at most rows x (seconds + 15) s; sipp is stopped by -timeout and
# `timeout`; everything stops on exit (trap).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=servers/lib.sh
. "$here/servers/lib.sh"

seconds=15
attack_rate=3000
victim_rate=25
rows="alone publish subscribe publish-unlimited subscribe-unlimited"
bin_dir="$repo/target/release"
out=""
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) seconds=$2; shift 2 ;;
    --attack-rate) attack_rate=$2; shift 2 ;;
    --victim-rate) victim_rate=$2; shift 2 ;;
    --rows) rows=$2; shift 2 ;;
    --bin-dir) bin_dir=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) die "unknown option $1 (see the head of $0)" ;;
  esac
done
[ -x "$bin_dir/presence-node" ] || die "no $bin_dir/presence-node: cargo build --release --bins"
ensure_packages sipp:sip-tester python3:python3 ss:iproute2
[ -n "$out" ] || out="$here/results/abuse-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
out=$(cd "$out" && pwd)

port=5096
metrics_port=9196
node_pid=""
sipp_pid=""
stop_all() {
  [ -z "$sipp_pid" ] || kill "$sipp_pid" 2>/dev/null || true
  if [ -n "$node_pid" ]; then
    kill "$node_pid" 2>/dev/null || true
    wait "$node_pid" 2>/dev/null || true
  fi
  node_pid=""
  sipp_pid=""
}
trap stop_all EXIT
trap 'exit 130' INT TERM

start_node() {
  local row=$1
  shift
  require_free_port "$port"
  require_free_port "$metrics_port"
  RUST_LOG=${RUST_LOG:-warn} "$bin_dir/presence-node" --insecure-no-auth \
    --udp "127.0.0.1:$port" --tcp "127.0.0.1:$port" \
    --presence-listen 127.0.0.1:50198 --registrar-listen 127.0.0.1:50199 \
    --metrics-listen "127.0.0.1:$metrics_port" --default-policy allow \
    "$@" </dev/null >"$out/$row.server.log" 2>&1 &
  node_pid=$!
  wait_tcp 127.0.0.1 "$port" 60 && wait_tcp 127.0.0.1 "$metrics_port" 10 ||
    { tail "$out/$row.server.log" >&2; die "presence-node did not start"; }
}

# The sum of every sample of a metric family whose line matches $1.
metric_sum() {
  python3 - "$metrics_port" "$1" <<'PY'
import re, sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode()
pattern = re.compile(sys.argv[2])
print(int(sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
              if not l.startswith("#") and pattern.search(l))))
PY
}

# The victim: writes one latency (ms) per measured PUBLISH to $1, "lost" for
# one that got no 200, and prints how many PUBLISHes it sent in all.
victim() {
  python3 - "$port" "$1" "$victim_rate" "$seconds" <<'PY'
import socket, sys, time, uuid
port, path, rate, seconds = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
server = ("127.0.0.1", port)
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", 0))
local = sock.getsockname()
aor = "victim@example.com"
call_id = uuid.uuid4().hex
etag = None
cseq = 0

def pidf(n):
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<presence xmlns="urn:ietf:params:xml:ns:pidf" '
            f'entity="sip:{aor}"><tuple id="t1"><status><basic>open</basic></status>'
            f'<note>change {n}</note></tuple></presence>\n')

def publish(n):
    """Sends one PUBLISH; returns (latency in s or None, status)."""
    global cseq, etag
    cseq += 1
    branch = "z9hG4bK-" + uuid.uuid4().hex
    body = pidf(n)
    lines = [f"PUBLISH sip:{aor} SIP/2.0",
             f"Via: SIP/2.0/UDP {local[0]}:{local[1]};branch={branch};rport",
             "Max-Forwards: 70", f"From: <sip:{aor}>;tag=v{n}", f"To: <sip:{aor}>",
             f"Call-ID: {call_id}", f"CSeq: {cseq} PUBLISH", "Event: presence", "Expires: 300",
             "Content-Type: application/pidf+xml"]
    if etag:
        lines.append(f"SIP-If-Match: {etag}")
    data = ("\r\n".join(lines + [f"Content-Length: {len(body.encode())}", "", body])).encode()
    start = time.perf_counter()
    resend = [0.5, 1.0, 2.0]
    next_send = start
    deadline = start + 8.0
    while True:
        now = time.perf_counter()
        if now >= deadline:
            return None, 0
        if now >= next_send:
            sock.sendto(data, server)
            next_send = now + (resend.pop(0) if resend else 4.0)
        sock.settimeout(max(0.001, min(next_send, deadline) - now))
        try:
            reply, _ = sock.recvfrom(65536)
        except socket.timeout:
            continue
        text = reply.decode(errors="replace")
        if branch not in text:
            continue
        status = int(text.split(" ", 2)[1])
        if status < 200:
            continue
        took = time.perf_counter() - start
        for line in text.split("\r\n"):
            if line.lower().startswith("sip-etag:"):
                etag = line.split(":", 1)[1].strip()
        return took, status

took, status = publish(0)
if status != 200:
    sys.exit(f"victim: the initial PUBLISH got {status}")
interval = 1.0 / rate
warmup = 2.0
begin = time.perf_counter()
n = 0
with open(path, "w") as f:
    while True:
        n += 1
        due = begin + n * interval
        now = time.perf_counter()
        if due > now:
            time.sleep(due - now)
        elapsed = time.perf_counter() - begin
        if elapsed > warmup + seconds:
            break
        took, status = publish(n)
        if elapsed < warmup:
            continue
        if took is None or status != 200:
            f.write(f"lost {status}\n")
        else:
            f.write(f"{took * 1000:.3f}\n")
print(n)
PY
}

attack() {
  local row=$1 scenario=$2 dir="$out/$row.sipp"
  mkdir -p "$dir"
  printf 'SEQUENTIAL\nattacker;example.com;-\n' >"$dir/users.csv"
  local calls=$((attack_rate * (seconds + 2)))
  # -l: open calls; a refused call ends at its 503, a held SUBSCRIBE stays
  # open until its NOTIFY is answered. -nd: a refused call ends without
  # the BYE sipp would send by default (the attacker sends only its
  # PUBLISHes or SUBSCRIBEs, and 200s to NOTIFYs).
  (cd "$dir" && exec timeout "$((seconds + 15))" sipp -sf "$here/sipp/$scenario" -inf "$dir/users.csv" \
    -t u1 -i 127.0.0.1 -p 0 -nd -r "$attack_rate" -m "$calls" -l "$((attack_rate * 3))" \
    -recv_timeout 5000 -timeout "$((seconds + 10))s" -buff_size 4194304 \
    -trace_stat -stf stat.csv -fd 1 -nostdin "127.0.0.1:$port" >"$dir/sipp.txt" 2>&1) &
  sipp_pid=$!
}

# median, p99, max, samples, lost of a latency file.
stats() {
  python3 - "$1" <<'PY'
import sys
values, lost = [], 0
for line in open(sys.argv[1]):
    if line.startswith("lost"):
        lost += 1
    elif line.strip():
        values.append(float(line))
values.sort()
def q(p):
    return values[min(len(values) - 1, int(p * len(values)))] if values else float("nan")
print(f"{q(0.5):.2f} {q(0.99):.2f} {values[-1] if values else float('nan'):.2f} {len(values)} {lost}")
PY
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
results="$out/rows.txt"
: >"$results"
for row in $rows; do
  case $row in
    alone) flags=(); scenario="" ;;
    publish) flags=(); scenario=publish-noauth.xml ;;
    subscribe) flags=(); scenario=subscribe-hold-noauth.xml ;;
    publish-unlimited) flags=(--rate-per-identity 0); scenario=publish-noauth.xml ;;
    subscribe-unlimited) flags=(--rate-per-identity 0); scenario=subscribe-hold-noauth.xml ;;
    *) die "unknown row $row" ;;
  esac
  log "row $row: ${scenario:-no attacker} ${flags[*]:-}"
  start_node "$row" "${flags[@]}"
  [ -z "$scenario" ] || attack "$row" "$scenario"
  victim_sent=$(victim "$out/$row.latency")
  if [ -n "$sipp_pid" ]; then
    wait "$sipp_pid" || true
    sipp_pid=""
  fi
  sent=0
  if [ -n "$scenario" ]; then
    method=PUBLISH
    [ "$scenario" = publish-noauth.xml ] || method=SUBSCRIBE
    sent=$(metric_sum "^sip_requests_total\\{method=\"$method\"\\}")
    ok=$(metric_sum "^sip_responses_total\\{method=\"$method\",code=\"2")
    # The victim's PUBLISHes are counted out (all but the lost are 2xx).
    if [ "$method" = PUBLISH ]; then
      lost=$(grep -c '^lost' "$out/$row.latency" || true)
      ok=$((ok - victim_sent + lost))
      sent=$((sent - victim_sent))
    fi
    edge_limited=$(metric_sum '^sip_requests_limited_total')
    capped=$(metric_sum '^presence_limit_refusals_total')
  else
    ok=0 edge_limited=0 capped=0
  fi
  echo "$row ${scenario:-none} $(stats "$out/$row.latency") $sent $ok $edge_limited $capped" >>"$results"
  stop_all
done

{
  echo "# Abuse: a victim's PUBLISH latency while one user floods"
  echo
  echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/ {print $2}') GB; kernel $(uname -r); load average before: $load_before, after: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- commit: $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown); binaries: $bin_dir"
  echo "- command: bench/abuse.sh --seconds $seconds --attack-rate $attack_rate --victim-rate $victim_rate --rows \"$rows\""
  echo "- presence-node, in-memory backend, --insecure-no-auth, UDP on 127.0.0.1; victim and attacker on the same address"
  echo
  echo "| row | attacker | victim PUBLISH median ms | p99 ms | worst ms | median / alone | p99 / alone | victim samples (lost) | attacker requests received | answered 2xx | refused by an edge limit | refused by a presence cap |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  python3 - "$results" "$attack_rate" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
base = next((r for r in rows if r[0] == "alone"), None)
for r in rows:
    name, scenario, med, p99, worst, n, lost, sent, ok, limited, capped = r
    what = "none" if scenario == "none" else (
        f"{sys.argv[2]}/s initial PUBLISH" if "publish" in scenario else f"{sys.argv[2]}/s new SUBSCRIBE")
    if base:
        ratio_med = f"{float(med) / float(base[2]):.2f}"
        ratio_p99 = f"{float(p99) / float(base[3]):.2f}"
    else:
        ratio_med = ratio_p99 = "-"
    print(f"| {name} | {what} | {med} | {p99} | {worst} | {ratio_med} | {ratio_p99} | {n} ({lost}) "
          f"| {sent if scenario != 'none' else '-'} | {ok if scenario != 'none' else '-'} "
          f"| {limited if scenario != 'none' else '-'} | {capped if scenario != 'none' else '-'} |")
PY
} >"$out/summary.md"
cat "$out/summary.md"
