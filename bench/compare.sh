#!/usr/bin/env bash
# Side-by-side SIP load comparison on this machine: Kamailio 5.6's presence
# server, presence-node and the cluster, each scenario at a ladder of rates
# with sipp (bench/ladder.sh), one summary table.
#
#   bench/compare.sh [options]
#
# Options:
#   --bin-dir DIR         our release binaries (default target/release)
#   --systems "..."       any of: kamailio presence-node cluster (default: all three)
#   --scenarios "..."     default: register publish subscribe-cycle
#                         (also: publish-cycle watcher)
#   --transport udp|tcp   default udp
#   --rates "R ..."       default "500 1000 2000 4000 8000 16000 32000"
#   --seconds S           per step, default 10
#   --quick               a short ladder to try the kit: rates "500 2000 8000", 3 s steps
#   --repeat N            run everything N times; the summary shows medians (default 1)
#   --compare-rates "..." rates at which CPU per call is compared (default "2000 8000")
#   --out DIR             default bench/results/<timestamp>
#   --kamailio-shm-mb N   Kamailio's shared memory (-m), default 512 as the operator runs it
#   --quiet-cpu PCT       before each ladder, wait until the machine (everything
#                         running) uses less than PCT % of one core over 5 s (default 30)
#   --quiet-wait S        ... but at most S seconds, then run anyway (default 1200;
#                         the ladder's other_cpu_pct column shows the disturbance)
#
# Every system starts fresh for each scenario (so memory is per scenario),
# on loopback, without authentication (Kamailio has none; ours runs with
# --insecure-no-auth), and is stopped afterwards - also on Ctrl-C or error.
# Writes OUT/summary.md (the table, the machine, the settings), OUT/summary.csv,
# and OUT/run<N>/ladder.csv with OUT/run<N>/raw/ (sipp's screens per step).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=servers/lib.sh
. "$here/servers/lib.sh"

all_args="$*"
bin_dir="$repo/target/release"
kamailio_shm_mb=512
quiet_cpu=30
quiet_wait=1200
systems="kamailio presence-node cluster"
scenarios="register publish subscribe-cycle"
transport=udp
rates="500 1000 2000 4000 8000 16000 32000"
seconds=10
repeat=1
compare_rates="2000 8000"
out=""
quick=0
while [ $# -gt 0 ]; do
  case $1 in
    --bin-dir) bin_dir=$2; shift 2 ;;
    --systems) systems=$2; shift 2 ;;
    --scenarios) scenarios=$2; shift 2 ;;
    --transport) transport=$2; shift 2 ;;
    --rates) rates=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    --repeat) repeat=$2; shift 2 ;;
    --compare-rates) compare_rates=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --kamailio-shm-mb) kamailio_shm_mb=$2; shift 2 ;;
    --quiet-cpu) quiet_cpu=$2; shift 2 ;;
    --quiet-wait) quiet_wait=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//; /^set -euo/d'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
if [ "$quick" -eq 1 ]; then
  rates="500 2000 8000"
  seconds=3
  compare_rates="2000 8000"
fi

# Everything the kit uses, from Debian packages when missing.
ensure_packages sipp:sip-tester kamailio:kamailio redis-server:redis-server \
  python3:python3 ss:iproute2
if [ ! -f /usr/lib/x86_64-linux-gnu/kamailio/modules/presence.so ] &&
  ! ls /usr/lib/*/kamailio/modules/presence.so >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends kamailio-presence-modules >&2
fi
for system in $systems; do
  case $system in
    kamailio) ;;
    presence-node) [ -x "$bin_dir/presence-node" ] || die "no $bin_dir/presence-node (build it or pass --bin-dir)" ;;
    cluster) for b in presence registrar edge; do [ -x "$bin_dir/$b" ] || die "no $bin_dir/$b"; done ;;
    *) die "unknown system $system" ;;
  esac
done
bin_dir=$(cd "$bin_dir" && pwd)

[ -n "$out" ] || out="$here/results/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
out=$(cd "$out" && pwd)

# The server of the current (system, scenario), stopped on any exit.
current_run_dir=""
current_script=""
stop_current() {
  if [ -n "$current_run_dir" ]; then
    "$current_script" stop --run-dir "$current_run_dir" || true
    current_run_dir=""
  fi
}
trap stop_current EXIT
trap 'exit 130' INT TERM

# Busy CPU of the whole machine over 5 s, in % of one core.
machine_busy_pct() {
  local a b
  a=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat)
  sleep 5
  b=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat)
  echo $(((b - a) * 100 / $(getconf CLK_TCK) / 5))
}

# Waits until the machine is quiet (other people's builds and tests share
# it), at most --quiet-wait seconds.
wait_quiet() {
  local waited=0 busy
  while true; do
    busy=$(machine_busy_pct)
    [ "$busy" -lt "$quiet_cpu" ] && return 0
    if [ "$waited" -ge "$quiet_wait" ]; then
      log "the machine is still busy (${busy}% of a core); running anyway"
      echo "$system $scenario run $r: started while the machine was busy (${busy}% of a core)" >>"$out/disturbed.txt"
      return 0
    fi
    [ "$waited" -gt 0 ] || log "waiting for a quiet machine (now ${busy}% of a core busy, want < ${quiet_cpu}%)"
    sleep 25
    waited=$((waited + 30))
  done
}

# ---- the machine, before the run --------------------------------------------
describe_machine() {
  local model kernel load mem
  model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
  kernel=$(uname -sr)
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  mem=$(awk '/^MemTotal:/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
  cat <<EOF
## Machine

| | |
|---|---|
| date | $(date -u '+%Y-%m-%d %H:%M UTC') |
| CPUs (nproc) | $(nproc) |
| CPU model | ${model:-unknown} |
| memory | $mem |
| kernel | $kernel |
| load average before the run (1, 5, 15 min) | $load |
| net.core.rmem_default / rmem_max | $(cat /proc/sys/net/core/rmem_default) / $(cat /proc/sys/net/core/rmem_max) |
| sipp | $(sipp -v 2>&1 | awk '/SIPp v/ {sub(/\.$/, "", $2); print $2; exit}') (on the same cores as the servers) |
| Kamailio | $(kamailio -v 2>/dev/null | awk '/^version:/ {print $3; exit}') |
| our binaries | $bin_dir, built $(date -u -r "$bin_dir/presence-node" '+%Y-%m-%d %H:%M UTC' 2>/dev/null || echo "?") (the repository was at $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo "?") during the run) |
EOF
}
describe_machine >"$out/machine.md"

cat >"$out/settings.md" <<EOF
## How this was run

\`bench/compare.sh $all_args\`

* systems: $systems; scenarios: $scenarios; transport: $transport
* ladder: $rates calls/s, ${seconds} s per step, stopped after a collapsed step
  (achieved < 50 % of offered or > 5 % failed); $repeat run(s)
* every system started fresh for each scenario, on 127.0.0.1, without
  authentication, logging warnings only (settings: bench/README.md):
  * kamailio: bench/servers/kamailio.cfg, \`-x tlsf -m $kamailio_shm_mb -M 64\`, children=4 (UDP) and
    tcp_children=4, usrloc db_mode 0, presence publ_cache 2 + subs_db_mode 0, presence_xml force_active 1
  * presence-node: in-memory backend, \`--insecure-no-auth\`, default settings otherwise
  * cluster: redis-server (no RDB, no AOF) + presence + registrar + one edge
    (\`--insecure-no-auth\`), gRPC between them unauthenticated; all four processes metered
* a fresh user per call (r<run>s<step>u<n>@example.com)
EOF

# ---- the runs -----------------------------------------------------------------
log "results: $out"
log "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$repeat"); do
  run_out="$out/run$r"
  mkdir -p "$run_out"
  for scenario in $scenarios; do
    for system in $systems; do
      current_script="$here/servers/$system.sh"
      current_run_dir=$(mktemp -d "/tmp/bench-$system.XXXXXX")
      log "== run $r/$repeat: $system, $scenario over $transport"
      extra=()
      [ "$system" = kamailio ] && extra=(--shm-mb "$kamailio_shm_mb")
      "$current_script" start --run-dir "$current_run_dir" --bin-dir "$bin_dir" --auth none "${extra[@]}" >/dev/null
      # Settle after start-up, and let other people's work on this machine finish.
      sleep 1
      wait_quiet
      "$here/ladder.sh" --server-env "$current_run_dir/server.env" --scenario "$scenario" \
        --transport "$transport" --rates "$rates" --seconds "$seconds" --out "$run_out" ||
        log "ladder failed for $system $scenario (continuing)"
      # Keep the servers' own logs when they said more than their start-up lines.
      for f in "$current_run_dir"/*.log; do
        [ "$(wc -l <"$f")" -gt 20 ] &&
          tail -n 20 "$f" | sed 's/\x1b\[[0-9;]*m//g' >"$run_out/raw/$system-$scenario-$(basename "$f")"
      done
      stop_current
    done
  done
done

python3 "$here/summarize.py" "$out" --compare-rates "$(echo "$compare_rates" | tr ' ' ',')" \
  --machine "$out/machine.md" --settings "$out/settings.md" >/dev/null
log "summary: $out/summary.md"
cat "$out/summary.md"
