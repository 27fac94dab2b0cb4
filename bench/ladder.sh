#!/usr/bin/env bash
# Runs one sipp scenario over one transport at a ladder of call rates
# against a SIP server, and meters the server during each step.
#
#   bench/ladder.sh --scenario register --target 127.0.0.1:5080 --pids "1234" [options]
#   bench/ladder.sh --scenario subscribe-cycle --server-env /tmp/run/server.env
#
# Options:
#   --scenario NAME    register | publish | publish-cycle | subscribe-cycle | watcher
#                      (bench/sipp/NAME.xml, or NAME-noauth.xml without --inf)
#   --transport T      udp (default) | tcp
#   --target HOST:PORT the server (any address; metering needs it on this machine)
#   --pids "P ..."     server PIDs to meter (CPU, memory, drops): on this machine only;
#                      without them those columns are empty (a remote server);
#                      "auto": the processes that own the target port's UDP sockets
#   --server-env FILE  take TARGET, METER_PIDS, INF and AUTH from a bench/servers start
#   --inf FILE         injection file "SEQUENTIAL" + "user;domain;token" lines: the
#                      scenario's bearer variant is used, its lines are reused in a
#                      cycle. Without it the no-auth variant runs with a fresh user
#                      per call (generated: r<run>s<step>u<n>;example.com;-).
#   --auth bearer|none force the variant (default: bearer with --inf, none without)
#   --rates "R ..."    offered calls/s (default "500 1000 2000 4000 8000 16000 32000")
#   --seconds S        length of each step (default 10): S x R calls are offered
#   --hold-s N         watcher only: how long each watcher stays subscribed (default 10)
#   --local-ip IP      sipp's address (Via, Contact): default 127.0.0.1 for a
#                      loopback target, else this machine's source address towards it
#   --label NAME       system name written in the results (default: the target)
#   --out DIR          results directory (default bench/results/ladder-<time>)
#   --keep-going       do not stop after a collapsed step
#   --settle S         pause between steps (default 2)
#
# Per step it records (ladder.csv; a table on stdout):
#   offered and achieved rate (successful calls / sipp's elapsed time, less
#   hold_s for the watcher), failed
#   calls, sipp retransmissions, the server's CPU (utime+stime of every metered
#   PID from /proc/PID/stat before and after the step: % of one core, and µs per
#   successful call and per request), UDP receive drops of every socket bound
#   to the SIP port (/proc/net/udp and udp6, delta), server RSS and PSS after
#   the step, sipp's response times (median and 99th percentile over every
#   request -> response, 1 ms resolution: sipp's clock), sipp's own CPU, and
#   what everything else on the machine used meanwhile (busy time of
#   /proc/stat minus the server and sipp; the load average at the start):
#   a step disturbed by other work shows there.
#
# A step is CLEAN when achieved >= 95 % of offered, no call failed and the
# server's SIP sockets dropped no datagram. It COLLAPSED when achieved < 50 %
# of offered or more than 5 % of the calls failed (or a metered process
# died); the ladder stops after a collapsed step.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=servers/lib.sh
. "$here/servers/lib.sh"

scenario=""
transport=udp
target=""
pids=""
inf=""
auth=""
rates="500 1000 2000 4000 8000 16000 32000"
seconds=10
hold_s=10
label=""
out=""
keep_going=0
settle=2
server_env=""
local_ip=""
while [ $# -gt 0 ]; do
  case $1 in
    --scenario) scenario=$2; shift 2 ;;
    --transport) transport=$2; shift 2 ;;
    --target) target=$2; shift 2 ;;
    --pids) pids=$2; shift 2 ;;
    --server-env) server_env=$2; shift 2 ;;
    --inf) inf=$2; shift 2 ;;
    --auth) auth=$2; shift 2 ;;
    --rates) rates=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --hold-s) hold_s=$2; shift 2 ;;
    --label) label=$2; shift 2 ;;
    --local-ip) local_ip=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --keep-going) keep_going=1; shift ;;
    --settle) settle=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//; /^set -euo/d'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

if [ -n "$server_env" ]; then
  # shellcheck disable=SC1090
  . "$server_env"
  [ -n "$target" ] || target=$TARGET
  [ -n "$pids" ] || pids=$METER_PIDS
  [ -n "$inf" ] || inf=${INF:-}
  [ -n "$label" ] || label=$SYSTEM
  if [ -z "$auth" ] && [ "${AUTH:-}" = none ]; then auth=none; fi
fi
[ -n "$scenario" ] || die "--scenario is required"
[ -n "$target" ] || die "--target (or --server-env) is required"
case $transport in
  udp) sipp_transport=u1 ;;
  tcp) sipp_transport=t1 ;;
  *) die "--transport is udp or tcp" ;;
esac
[ -n "$auth" ] || { if [ -n "$inf" ]; then auth=bearer; else auth=none; fi; }
case $auth in
  bearer)
    [ -n "$inf" ] || die "--auth bearer needs --inf (user;domain;token lines)"
    scenario_file="$here/sipp/$scenario.xml"
    ;;
  none) scenario_file="$here/sipp/$scenario-noauth.xml" ;;
  *) die "--auth is bearer or none" ;;
esac
[ -f "$scenario_file" ] || die "no scenario $scenario_file"
[ -z "$inf" ] || [ -f "$inf" ] || die "no injection file $inf"
[ -n "$label" ] || label=$target
sip_host=${target%:*}
sip_port=${target##*:}
if [ -z "$local_ip" ]; then
  case $sip_host in
    127.*|localhost|::1|\[::1\]) local_ip=127.0.0.1 ;;
    *)
      # The source address the kernel would use towards the target.
      addr=$(getent ahostsv4 "$sip_host" | awk 'NR == 1 {print $1}')
      local_ip=$(ip -o route get "${addr:-$sip_host}" 2>/dev/null | grep -o 'src [0-9.]*' | cut -d' ' -f2)
      [ -n "$local_ip" ] || die "cannot tell this machine's address towards $sip_host: pass --local-ip"
      ;;
  esac
fi
if [ "$pids" = auto ]; then
  ensure_packages ss:iproute2
  pids=$(ss -Hlnup "( sport = :$sip_port )" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -un | tr '\n' ' ')
  [ -n "$pids" ] || die "--pids auto: no process owns a UDP socket on port $sip_port here"
fi

# Requests the client sends per call (for CPU per request).
case $scenario in
  register|publish) requests_per_call=1 ;;
  publish-cycle) requests_per_call=4 ;;
  subscribe-cycle|watcher) requests_per_call=2 ;;
  *) requests_per_call=1 ;;
esac

ensure_packages sipp:sip-tester
[ -n "$out" ] || out="$here/results/ladder-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
out=$(cd "$out" && pwd)
csv="$out/ladder.csv"
run_id=$(date +%s | tail -c 6)
clk_tck=$(getconf CLK_TCK)
# As many open calls as the file limit allows (sipp checks calls against it).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
max_open=$(($(ulimit -n) - 1000))

# ---- metering -------------------------------------------------------------

# Sum of utime+stime (clock ticks) of the metered PIDs; the comm field may
# hold spaces, so fields are counted after its closing parenthesis.
cpu_ticks() {
  local p total=0 t
  for p in $pids; do
    t=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}') || t=0
    total=$((total + ${t:-0}))
  done
  echo "$total"
}

# Sum of the "drops" column over every UDP socket bound to the SIP port
# (several with SO_REUSEPORT), IPv4 and IPv6.
udp_drops() {
  [ -n "$pids" ] || { echo 0; return; } # a remote server: its sockets are not here
  local hex
  hex=$(printf '%04X' "$sip_port")
  cat /proc/net/udp /proc/net/udp6 2>/dev/null | awk -v hex="$hex" '
    $2 ~ (":" hex "$") { d += $NF }
    END { print d + 0 }'
}

# Resident and proportional memory (MiB) of the metered PIDs: RSS counts the
# shared memory of a multi-process server once per process, PSS shares it out.
memory_mb() {
  local p rss=0 pss=0 r s
  for p in $pids; do
    r=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null) || r=0
    s=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null) || s=0
    rss=$((rss + ${r:-0}))
    pss=$((pss + ${s:-0}))
  done
  awk -v r="$rss" -v s="$pss" 'BEGIN { printf "%.1f %.1f\n", r / 1024, s / 1024 }'
}

# Busy clock ticks of the whole machine (all CPUs) from /proc/stat: what
# everything else used during a step is this minus the server and sipp.
machine_busy_ticks() {
  awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat
}

all_alive() {
  local p
  for p in $pids; do [ -d "/proc/$p" ] || return 1; done
  return 0
}

# CPU seconds this shell's finished children used (user + system), from the
# `times` builtin, which must run in this shell (not in a $(...) subshell):
# sipp is the only child that runs between two readings. Usage:
#   times >FILE; children_cpu FILE
children_cpu() {
  awk 'NR == 2 {
    n = split($0, f, " "); s = 0
    for (i = 1; i <= n; i++) { split(f[i], m, "m"); sub("s", "", m[2]); s += m[1] * 60 + m[2] }
    printf "%.3f\n", s }' "$1"
}

# ---- sipp -----------------------------------------------------------------

# Injection file with a fresh user per call for the no-auth variant.
make_users() {
  local file=$1 count=$2 step=$3
  awk -v n="$count" -v prefix="r${run_id}s${step}u" 'BEGIN {
    print "SEQUENTIAL"
    for (i = 1; i <= n; i++) printf "%s%d;example.com;-\n", prefix, i }' >"$file"
}

# Value of a named column in the last line of sipp's statistics file.
stat_value() {
  local file=$1 name=$2
  awk -F';' -v name="$name" '
    NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) col = i }
    { last = $0 }
    END { split(last, f, ";"); print (col ? f[col] : "") }' "$file"
}

# Seconds between StartTime and CurrentTime of the last statistics line
# (each is "date<TAB>time<TAB>epoch.micros").
stat_elapsed() {
  awk -F';' 'END { split($1, s, "\t"); split($3, c, "\t"); printf "%.3f\n", c[3] - s[3] }' "$1"
}

# Median and 99th percentile (ms) of every response time sipp logged.
rtt_percentiles() {
  local file=$1
  if [ ! -s "$file" ]; then echo " "; return; fi
  awk -F';' 'NR > 1 && $2 != "" { print $2 + 0 }' "$file" | sort -n | awk '
    { v[NR] = $1 }
    END {
      if (NR == 0) { print " "; exit }
      i50 = int(NR * 0.50); if (i50 < 1) i50 = 1
      i99 = int(NR * 0.99); if (i99 < 1) i99 = 1
      printf "%g %g\n", v[i50], v[i99] }'
}

# One attempt at a step: runs sipp at $rate for $calls calls and sets the
# measurements (globals: work, sipp_exit, t0, t1, cpu0, cpu1, busy0, busy1, load1, drops0, drops1,
# sipp_cpu0, sipp_cpu1, rss_mb, pss_mb, alive, successful, failed, retrans,
# elapsed, p50, p99).
run_step() {
  local attempt=$1
  work=$(mktemp -d "$out/.step.XXXXXX")
  step_inf=$inf
  if [ "$auth" = none ] && [ -z "$inf" ]; then
    step_inf="$work/users.csv"
    make_users "$step_inf" "$calls" "${step}a${attempt}"
  fi
  # Open calls: a few seconds' worth (a watcher stays open hold_s seconds).
  open_limit=$((rate * 3))
  [ "$scenario" = watcher ] && open_limit=$((rate * (hold_s + 5)))
  [ "$open_limit" -ge 100 ] || open_limit=100
  # sipp wants open calls below its file limit (it warns otherwise).
  [ "$open_limit" -le "$max_open" ] || open_limit=$max_open

  # sipp writes response times in batches of rtt_freq and drops the last
  # partial batch: small batches for small steps, fewer writes for big ones.
  local rtt_freq=10
  [ "$rate" -lt 4000 ] || rtt_freq=100
  drops0=$(udp_drops)
  load1=$(cut -d' ' -f1 /proc/loadavg)
  busy0=$(machine_busy_ticks)
  cpu0=$(cpu_ticks)
  times >"$work/times0"
  t0=$(date +%s.%N)
  # -recv_timeout: a call waiting 10 s for a message fails instead of hanging;
  # -timeout bounds the whole step; -buff_size: sipp's own socket buffers
  # (capped by net.core.rmem_max) so that the load generator drops nothing.
  set +e
  (cd "$work" && exec sipp -sf "$scenario_file" -inf "$step_inf" -key hold_s "$hold_s" \
    -t "$sipp_transport" -i "$local_ip" -p 0 \
    -r "$rate" -rp 1000 -m "$calls" -l "$open_limit" \
    -recv_timeout 10000 -timeout "$((seconds * 3 + hold_s + 30))s" -timeout_error \
    -buff_size 4194304 -max_recv_loops 10000 -max_sched_loops 10000 \
    -trace_stat -stf stat.csv -fd 1 -trace_rtt -rtt_freq "$rtt_freq" -trace_err \
    -nostdin "$target" >"$work/sipp.txt" 2>&1) &
  sipp_pid=$!
  wait "$sipp_pid"
  sipp_exit=$?
  set -e
  t1=$(date +%s.%N)
  cpu1=$(cpu_ticks)
  busy1=$(machine_busy_ticks)
  drops1=$(udp_drops)
  times >"$work/times1"
  sipp_cpu0=$(children_cpu "$work/times0")
  sipp_cpu1=$(children_cpu "$work/times1")
  read -r rss_mb pss_mb < <(memory_mb)
  alive=1
  all_alive || alive=0

  stat="$work/stat.csv"
  if [ -s "$stat" ]; then
    successful=$(stat_value "$stat" "SuccessfulCall(C)")
    failed=$(stat_value "$stat" "FailedCall(C)")
    retrans=$(stat_value "$stat" "Retransmissions(C)")
    elapsed=$(stat_elapsed "$stat")
  else
    successful=0 failed=$calls retrans=0 elapsed=$seconds
  fi
  # Calls that never completed count as failed too (sipp stopped by its
  # -timeout, or killed, leaves calls neither successful nor failed).
  if [ $((calls - ${successful:-0})) -gt "${failed:-0}" ]; then
    failed=$((calls - ${successful:-0}))
  fi
  rtt_file=$(ls "$work"/*_rtt.csv 2>/dev/null | head -n 1 || true)
  read -r p50 p99 < <(rtt_percentiles "${rtt_file:-/nonexistent}")
}

header="system,scenario,transport,auth,step,offered_rate,calls,step_seconds,elapsed_s,achieved_rate,successful,failed,retransmissions,server_cpu_pct,server_cpu_us_per_call,requests_per_call,server_cpu_us_per_request,udp_drops,rss_mb,pss_mb,rtt_p50_ms,rtt_p99_ms,sipp_cpu_pct,other_cpu_pct,load1,sipp_exit,clean,collapsed"
[ -f "$csv" ] || echo "$header" >"$csv"

print_row_header() {
  printf '%-14s %-16s %-4s %8s %9s %8s %8s %7s %7s %9s %8s %7s %6s %6s %6s %6s %6s %s\n' \
    system scenario tp offered achieved failed retrans cpu% us/call us/req drops rssMB pssMB p50ms p99ms sipp% other% clean
}

log "ladder: $label $scenario over $transport ($auth) -> $target; rates: $rates; ${seconds}s per step; metering PIDs: ${pids:-none}"
log "results: $csv"
print_row_header
step=0
for rate in $rates; do
  step=$((step + 1))
  calls=$((rate * seconds))
  all_alive || { log "a metered process is gone; stopping"; break; }
  # sipp killed from outside (exit 128+N) or failing to start is not a
  # measurement of the server: try such a step once more.
  for attempt in 1 2; do
    run_step "$attempt"
    case $sipp_exit in 0|1) break ;; esac
    [ "$attempt" -eq 1 ] || break
    log "sipp ended abnormally (exit $sipp_exit) at $rate/s; running the step again"
    rm -rf "$work"
    sleep "$settle"
  done

  row=$(awk -v label="$label" -v sc="$scenario" -v tp="$transport" -v auth="$auth" \
    -v step="$step" -v rate="$rate" -v calls="$calls" -v secs="$seconds" \
    -v elapsed="$elapsed" -v ok="${successful:-0}" -v failed="${failed:-0}" -v retrans="${retrans:-0}" \
    -v cpu0="$cpu0" -v cpu1="$cpu1" -v hz="$clk_tck" -v t0="$t0" -v t1="$t1" -v rpc="$requests_per_call" \
    -v drops=$((drops1 - drops0)) -v rss="$rss_mb" -v pss="$pss_mb" -v p50="${p50:-}" -v p99="${p99:-}" \
    -v s0="$sipp_cpu0" -v s1="$sipp_cpu1" -v rc="$sipp_exit" -v pids="$pids" -v alive="$alive" \
    -v hold="$([ "$scenario" = watcher ] && echo "$hold_s" || echo 0)" \
    -v busy0="$busy0" -v busy1="$busy1" -v load1="$load1" 'BEGIN {
      wall = t1 - t0; if (elapsed <= 0) elapsed = wall
      # A watcher call lasts hold_s: calls were started over elapsed - hold_s.
      busy = elapsed - hold; if (busy <= 0) busy = secs
      achieved = ok / busy
      metered = (pids != "")
      cpu_s = (cpu1 - cpu0) / hz
      cpu_pct = metered ? sprintf("%.1f", 100 * cpu_s / wall) : ""
      us_call = (metered && ok > 0) ? sprintf("%.1f", cpu_s * 1e6 / ok) : ""
      us_req = (metered && ok > 0) ? sprintf("%.1f", cpu_s * 1e6 / ok / rpc) : ""
      sipp_pct = sprintf("%.1f", 100 * (s1 - s0) / wall)
      # Everything else on the machine (other processes, kernel softirqs
      # not charged to a process): a disturbed step shows here.
      other = 100 * (busy1 - busy0) / hz / wall - 100 * (s1 - s0) / wall - (metered ? 100 * cpu_s / wall : 0)
      other_pct = sprintf("%.1f", other < 0 ? 0 : other)
      clean = (achieved >= 0.95 * rate && failed == 0 && drops == 0) ? "yes" : "no"
      collapsed = (achieved < 0.5 * rate || failed > 0.05 * calls || !alive) ? "yes" : "no"
      printf "%s,%s,%s,%s,%d,%d,%d,%d,%.3f,%.1f,%d,%d,%d,%s,%s,%d,%s,%s,%s,%s,%s,%s,%s,%s,%s,%d,%s,%s\n",
        label, sc, tp, auth, step, rate, calls, secs, elapsed, achieved, ok, failed, retrans,
        cpu_pct, us_call, rpc, us_req, metered ? drops : "", metered ? rss : "", metered ? pss : "", p50, p99,
        sipp_pct, other_pct, load1, rc, clean, collapsed }')
  echo "$row" >>"$csv"
  echo "$row" | awk -F',' '{
    printf "%-14s %-16s %-4s %8s %9s %8s %8s %7s %7s %9s %8s %7s %6s %6s %6s %6s %6s %s\n",
      $1, $2, $3, $6, $10, $12, $13, $14, $15, $17, $18, $19, $20, $21, $22, $23, $24, ($27 == "yes" ? "clean" : ($28 == "yes" ? "COLLAPSED" : "-")) }'

  # Keep the small raw files: sipp's final screen, the statistics, the first errors.
  raw="$out/raw/${label}-${scenario}-${transport}-${auth}-step${step}-${rate}"
  mkdir -p "$(dirname "$raw")"
  sed -n '/Scenario Screen/,$p' "$work/sipp.txt" | tail -n 80 >"$raw.sipp.txt" || true
  [ -s "$stat" ] && { head -n 1 "$stat"; tail -n 1 "$stat"; } >"$raw.stat.csv"
  err=$(ls "$work"/*_errors.log 2>/dev/null | head -n 1 || true)
  if [ -n "$err" ] && [ -s "$err" ]; then
    grep -v 'receive timeout on message' "$err" | head -n 40 >"$raw.errors.txt" || true
    [ -s "$raw.errors.txt" ] || rm -f "$raw.errors.txt"
  fi
  rm -rf "$work"

  if [ "$(echo "$row" | awk -F',' '{print $NF}')" = yes ] && [ "$keep_going" -eq 0 ]; then
    log "step at $rate/s collapsed; stopping the ladder"
    break
  fi
  [ "$alive" -eq 1 ] || { log "a metered process died; stopping"; break; }
  sleep "$settle"
done
