#!/usr/bin/env bash
# Expiry at scale: how late a watcher hears that something expired, when
# thousands expire every second; and a soak of steady creation and expiry.
#
#   bench/expiry.sh latency [--system presence-node|cluster] [--count N] [--rate R]
#                           [--setup-rate S] [--out DIR]
#   bench/expiry.sh soak    [--minutes M] [--rate R] [--out DIR]
#
# latency (default: presence-node, 30000 expiries at 10000/s): N items, a
# third each of
#   * publications (PUBLISH, watched by a long subscription: the watcher must
#     hear `closed` after `open`),
#   * registrations (REGISTER; registration-driven presence: the watcher must
#     hear `closed` after `open`),
#   * subscriptions (SUBSCRIBE: the watcher must hear
#     `Subscription-State: terminated;reason=timeout`),
# are created at S requests/s (default 4000) with Expires chosen so that they
# fall due at R per second, interleaved, starting a few seconds after the
# last creation. Per kind: latency from the expiry (request sent + Expires,
# so a slight overestimate) to the NOTIFY's arrival, median, p99, max, and
# items whose watcher heard nothing within 10 s. The driver is a
# single-threaded Python UDP user agent (no authentication: the server runs
# with --insecure-no-auth). --system cluster runs redis-server + presence +
# registrar + edge (bench/servers/cluster.sh) instead.
#
# soak (default 10 minutes at 2000 creations/s): sipp REGISTER and PUBLISH
# (Expires 60, R/2 each per second, 120000 users each cycled, so every
# registration and publication expires and is created again) against
# presence-node; the node's RSS every 10 s into DIR/rss.csv, and the
# spread of RSS after the first 2 minutes.
#
# Ports of its own (loopback only): SIP 5094 (presence-node) and 5095
# (cluster edge), gRPC 50194/50195 and 50196/50197, redis 6397. Needs the
# release binaries (cargo build --release --bins); installs sip-tester and
# redis-server from Debian packages when missing. Stops what it started on
# exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=servers/lib.sh
. "$here/servers/lib.sh"

mode=${1:-latency}
[ $# -gt 0 ] && shift
system=presence-node
count=30000
rate=""
setup_rate=""
minutes=10
bin_dir="$repo/target/release"
out=""
while [ $# -gt 0 ]; do
  case $1 in
    --system) system=$2; shift 2 ;;
    --count) count=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --setup-rate) setup_rate=$2; shift 2 ;;
    --minutes) minutes=$2; shift 2 ;;
    --bin-dir) bin_dir=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) die "unknown option $1" ;;
  esac
done
stamp=$(date -u +%Y%m%d-%H%M)
out=${out:-$here/results/$stamp-expiry-$mode}
mkdir -p "$out"
run_dir=$(mktemp -d /tmp/expiry-bench.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [ -f "$run_dir/cluster.started" ]; then
    "$here/servers/cluster.sh" stop --run-dir "$run_dir/cluster" >/dev/null 2>&1 || true
  fi
  wait 2>/dev/null || true
}
trap cleanup EXIT

machine() {
  echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -m | awk '/Mem:/{print $2}') MB"
  echo "- kernel: $(uname -r); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- commit: $(git -C "$repo" rev-parse --short HEAD)"
}

start_node() {
  [ -x "$bin_dir/presence-node" ] || die "no $bin_dir/presence-node: cargo build --release --bins"
  require_free_port 5094
  RUST_LOG=${RUST_LOG:-info} "$bin_dir/presence-node" --insecure-no-auth \
    --udp 127.0.0.1:5094 --tcp 127.0.0.1:5094 \
    --presence-listen 127.0.0.1:50194 --registrar-listen 127.0.0.1:50195 \
    --min-expires 1 --default-policy allow \
    --max-subscriptions-per-source 0 >"$out/server.log" 2>&1 &
  node_pid=$!
  pids+=("$node_pid")
  for _ in $(seq 50); do
    if ss -Huln "( sport = :5094 )" | grep -q .; then return 0; fi
    kill -0 "$node_pid" 2>/dev/null || { tail "$out/server.log"; die "presence-node did not start"; }
    sleep 0.2
  done
  die "presence-node did not listen on 5094"
}

case $mode in
latency)
  ensure_packages python3:python3
  rate=${rate:-10000}
  # Requests per second while creating: fast enough to create everything in
  # seconds, slow enough that the server answers each at once (a request
  # answered late would make its expiry look late).
  setup_rate=${setup_rate:-4000}
  target=127.0.0.1:5094
  if [ "$system" = cluster ]; then
    ensure_packages redis-server:redis-server
    require_free_port 5095
    mkdir -p "$run_dir/cluster"
    # Expiries of a few seconds, and no approval step for the watchers.
    export PRESENCE_MIN_EXPIRES=1 REGISTRAR_MIN_EXPIRES=1 PRESENCE_DEFAULT_POLICY=allow
    "$here/servers/cluster.sh" start --run-dir "$run_dir/cluster" --bin-dir "$bin_dir" \
      --port 5095 --redis-port 6397 --grpc-ports 50196,50197 --auth none >"$out/server.log" 2>&1
    touch "$run_dir/cluster.started"
    target=127.0.0.1:5095
  else
    start_node
  fi
  {
    echo "# Expiry latency: $system, $count expiries at $rate/s"
    echo
    machine
    echo "- command: bench/expiry.sh latency --system $system --count $count --rate $rate --setup-rate $setup_rate"
    echo
  } >"$out/summary.md"
  python3 - "$target" "$count" "$rate" "$setup_rate" >>"$out/summary.md" <<'PY'
import random, re, select, socket, sys, time

target_host, target_port = sys.argv[1].split(":")
target = (target_host, int(target_port))
count, rate = int(sys.argv[2]), float(sys.argv[3])
SETUP_RATE = float(sys.argv[4])  # requests per second while setting up
WATCH_EXPIRES = 300          # the long subscriptions of publication / registration watchers
GRACE = 10.0                 # how long after the last expiry we wait for NOTIFYs
run = "%06x" % random.getrandbits(24)

socks = []
for _ in range(4):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    socks.append(s)
local = [s.getsockname() for s in socks]

pending = {}     # branch -> [item, kind of request, bytes, sock index, sent at, tries]
dialogs = {}     # call-id -> item (watcher side)
stats = {"sent": 0, "retrans": 0, "failed": 0, "notifies": 0}

class Item:
    __slots__ = ("kind", "n", "user", "expires", "created", "due", "opened", "heard", "sock", "ok")
    def __init__(self, kind, n):
        self.kind, self.n = kind, n
        self.user = "x%s%s%d" % (run, kind, n)
        self.expires = None; self.created = None; self.due = None
        self.opened = False; self.heard = None; self.sock = n % len(socks); self.ok = True

def send_request(item, method, to_user, from_user, call_id, expires, body=b"", extra=""):
    i = item.sock
    host, port = local[i]
    branch = "z9hG4bK%s%d%s" % (method[:1], item.n, random.getrandbits(40))
    ctype = "Content-Type: application/pidf+xml\r\n" if body else ""
    ruri = "sip:example.com" if method == "REGISTER" else "sip:%s@example.com" % to_user
    msg = ("%s %s SIP/2.0\r\nVia: SIP/2.0/UDP %s:%d;branch=%s;rport\r\nMax-Forwards: 70\r\n"
           "From: <sip:%s@example.com>;tag=t%s\r\nTo: <sip:%s@example.com>\r\nCall-ID: %s\r\n"
           "CSeq: 1 %s\r\nContact: <sip:%s@%s:%d>\r\nExpires: %d\r\n%s%s"
           "Content-Length: %d\r\n\r\n" % (
               method, ruri, host, port, branch, from_user, call_id[:12], to_user, call_id,
               method, from_user, host, port, expires, extra, ctype, len(body))).encode() + body
    socks[i].sendto(msg, target)
    stats["sent"] += 1
    pending[branch] = [item, method, msg, i, time.monotonic(), 1]
    return time.monotonic()

def pidf(user, basic):
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<presence xmlns="urn:ietf:params:xml:ns:pidf" '
            'entity="sip:%s@example.com"><tuple id="t1"><status><basic>%s</basic></status>'
            '</tuple></presence>\n' % (user, basic)).encode()

def header(text, name):
    m = re.search(r"^%s:\s*(.*)$" % name, text, re.M | re.I)
    return m.group(1).strip() if m else ""

def on_datagram(data, i, now):
    head, _, body = data.partition(b"\r\n\r\n")
    text = head.decode("utf-8", "replace")
    if text.startswith("SIP/2.0"):
        code = int(text.split(" ", 2)[1])
        if code < 200:
            return
        m = re.search(r"branch=([^;\s,]+)", header(text, "Via"))
        entry = pending.pop(m.group(1), None) if m else None
        if entry and code >= 300:
            entry[0].ok = False
            stats["failed"] += 1
        return
    if not text.startswith("NOTIFY"):
        return
    stats["notifies"] += 1
    reply = "SIP/2.0 200 OK\r\n"
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        for line in re.findall(r"^%s:.*$" % name, text, re.M | re.I):
            reply += line.rstrip("\r") + "\r\n"
    reply += "Content-Length: 0\r\n\r\n"
    socks[i].sendto(reply.encode(), target)
    item = dialogs.get(header(text, "Call-ID"))
    if item is None or item.heard is not None:
        return
    state = header(text, "Subscription-State").lower()
    if item.kind == "s":
        if state.startswith("terminated") and item.due is not None:
            item.heard = now
        return
    basic = re.search(rb"<basic>\s*(open|closed)\s*</basic>", body)
    if basic is None:
        return
    if basic.group(1) == b"open":
        item.opened = True
    elif item.opened and item.due is not None:
        item.heard = now

def pump(until):
    while True:
        now = time.monotonic()
        timeout = until - now
        if timeout <= 0:
            return
        ready, _, _ = select.select(socks, [], [], min(timeout, 0.05))
        for s in ready:
            i = socks.index(s)
            for _ in range(256):
                try:
                    data = s.recv(65535)
                except BlockingIOError:
                    break
                on_datagram(data, i, time.monotonic())
        retransmit(time.monotonic())

def retransmit(now):
    for branch, entry in list(pending.items()):
        if now - entry[4] > 0.5 * (2 ** (entry[5] - 1)):
            if entry[5] >= 5:
                pending.pop(branch)
                entry[0].ok = False
                stats["failed"] += 1
                continue
            socks[entry[3]].sendto(entry[2], target)
            entry[4] = now; entry[5] += 1
            stats["retrans"] += 1

third = count // 3
items = [Item(k, n) for n in range(third) for k in ("p", "r", "s")]
# 1. The long subscriptions of the publication and registration watchers.
watched = [it for it in items if it.kind != "s"]
t = time.monotonic()
for k, it in enumerate(watched):
    call_id = "w%s-%s" % (run, it.user)
    dialogs[call_id] = it
    send_request(it, "SUBSCRIBE", it.user, "w" + it.user, call_id, WATCH_EXPIRES,
                 extra="Event: presence\r\nAccept: application/pidf+xml\r\n")
    pump(t + (k + 1) / SETUP_RATE)
pump(time.monotonic() + 2)
# 2. The creations, due at `rate` per second from `first_due` on.
creation_time = len(items) / SETUP_RATE
first_due = time.monotonic() + creation_time + 3.0
t = time.monotonic()
for k, it in enumerate(items):
    due_target = first_due + k / rate
    now = time.monotonic()
    it.expires = max(1, int(-(-(due_target - now) // 1)))
    if it.kind == "p":
        sent = send_request(it, "PUBLISH", it.user, it.user, "p%s-%s" % (run, it.user), it.expires,
                            body=pidf(it.user, "open"), extra="Event: presence\r\n")
    elif it.kind == "r":
        sent = send_request(it, "REGISTER", it.user, it.user, "r%s-%s" % (run, it.user), it.expires)
    else:
        call_id = "s%s-%s" % (run, it.user)
        dialogs[call_id] = it
        sent = send_request(it, "SUBSCRIBE", it.user, "w" + it.user, call_id, it.expires,
                            extra="Event: presence\r\nAccept: application/pidf+xml\r\n")
    it.created = sent
    it.due = sent + it.expires
    pump(t + (k + 1) / SETUP_RATE)
last_due = max(it.due for it in items)
pump(last_due + GRACE)

def pct(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100.0 * len(values)))]

valid = [it for it in items if it.ok]
dues = sorted(it.due for it in valid)
span = dues[-1] - dues[0] if len(dues) > 1 else 0
print("- expiries: %d valid of %d (%d requests failed), due over %.2f s: %.0f expiries/s"
      % (len(valid), len(items), stats["failed"], span, len(valid) / span if span else 0))
print("- requests sent %d, retransmitted %d; NOTIFYs received %d" % (stats["sent"], stats["retrans"], stats["notifies"]))
print()
print("| kind | watcher hears | count | median ms | p90 ms | p99 ms | max ms | not heard in %.0f s |" % GRACE)
print("|---|---|---:|---:|---:|---:|---:|---:|")
names = {"p": ("publication", "closed"), "r": ("registration", "closed"),
         "s": ("subscription", "terminated;reason=timeout")}
every = []
for kind in ("p", "r", "s"):
    mine = [it for it in valid if it.kind == kind]
    lat = [(it.heard - it.due) * 1000 for it in mine if it.heard is not None]
    every += lat
    print("| %s | %s | %d | %.0f | %.0f | %.0f | %.0f | %d |" % (
        names[kind][0], names[kind][1], len(mine), pct(lat, 50), pct(lat, 90), pct(lat, 99),
        max(lat) if lat else float("nan"), len(mine) - len(lat)))
print("| all | | %d | %.0f | %.0f | %.0f | %.0f | %d |" % (
    len(valid), pct(every, 50), pct(every, 90), pct(every, 99), max(every) if every else float("nan"),
    len(valid) - len(every)))
PY
  grep -iE "expiry in the last minute|panic|ERROR" "$out/server.log" | tail -5 >"$out/server-notes.txt" || true
  cat "$out/summary.md"
  ;;
soak)
  rate=${rate:-2000}
  ensure_packages sipp:sip-tester python3:python3
  start_node
  half=$((rate / 2))
  users=120000
  awk -v n=$users 'BEGIN{print "SEQUENTIAL"; for(i=1;i<=n;i++) printf "soak%06d;example.com;-\n", i}' >"$run_dir/users.csv"
  for s in register publish; do
    sed 's/Expires: 300/Expires: 60/' "$here/sipp/$s-noauth.xml" >"$run_dir/$s.xml"
  done
  seconds=$((minutes * 60))
  for s in register publish; do
    sipp -sf "$run_dir/$s.xml" -inf "$run_dir/users.csv" -r "$half" -rp 1000 \
      -timeout "${seconds}s" -timeout_error -m $((half * seconds)) -l 20000 -nostdin \
      -trace_stat -stf "$run_dir/$s-stat.csv" -fd 10 -bg -i 127.0.0.1 \
      127.0.0.1:5094 >"$run_dir/$s.sipp.log" 2>&1 || true
  done
  echo "seconds,rss_kb" >"$out/rss.csv"
  start=$(date +%s)
  while [ $(( $(date +%s) - start )) -lt "$seconds" ]; do
    kill -0 "$node_pid" 2>/dev/null || die "presence-node died"
    echo "$(( $(date +%s) - start )),$(awk '/VmRSS/{print $2}' "/proc/$node_pid/status")" >>"$out/rss.csv"
    sleep 10
  done
  # sipp -bg prints the PID of the background process it left running.
  for s in register publish; do
    sipp_pid=$(sed -n 's/.*PID=\[\([0-9]*\)\].*/\1/p' "$run_dir/$s.sipp.log" | head -1)
    [ -n "$sipp_pid" ] && kill "$sipp_pid" 2>/dev/null || true
  done
  {
    echo "# Expiry soak: presence-node, $rate creations/s (REGISTER + PUBLISH, Expires 60), $minutes min"
    echo
    machine
    echo "- command: bench/expiry.sh soak --minutes $minutes --rate $rate"
    echo
    python3 - "$out/rss.csv" <<'PY'
import csv, sys
rows = [(int(r["seconds"]), int(r["rss_kb"])) for r in csv.DictReader(open(sys.argv[1]))]
after = [kb for s, kb in rows if s >= 120]
if after:
    lo, hi = min(after), max(after)
    print("- RSS after the first 2 minutes: min %.1f MB, max %.1f MB, spread %.1f %% of the minimum"
          % (lo / 1024, hi / 1024, 100.0 * (hi - lo) / lo))
print("- RSS every 60 s (MB): " + ", ".join("%d s %.0f" % (s, kb / 1024) for s, kb in rows if s % 60 < 10))
PY
    for s in register publish; do
      f=$(ls "$run_dir"/$s*_.csv "$run_dir/$s-stat.csv" 2>/dev/null | head -1 || true)
      [ -n "$f" ] && echo "- sipp $s: $(awk -F';' 'NR==1{for(i=1;i<=NF;i++) col[$i]=i; next} {last=$0} END{split(last,v,";"); print "calls " v[col["TotalCallCreated"]] ", successful " v[col["SuccessfulCall(C)"]] ", failed " v[col["FailedCall(C)"]]}' "$f")"
    done
    grep "expiry in the last minute" "$out/server.log" | tail -3 | sed 's/^/    /'
  } >"$out/summary.md"
  cat "$out/summary.md"
  ;;
*) die "usage: $0 latency|soak [options]" ;;
esac
