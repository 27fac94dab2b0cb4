#!/usr/bin/env bash
# Starts and stops Kamailio 5.6 as an in-memory presence server on loopback,
# for the side-by-side benchmark (settings: bench/servers/kamailio.cfg and
# bench/README.md).
#
#   bench/servers/kamailio.sh start --run-dir DIR [--port 5070] [--children 4] [--shm-mb 512] [--pkg-mb 64]
#   bench/servers/kamailio.sh stop  --run-dir DIR
#   bench/servers/kamailio.sh run   [same options as start]   # foreground, Ctrl-C stops
#
# `start` prints DIR/server.env: the SIP target and METER_PIDS, the main
# process and every child it forked (UDP and TCP workers, timers, ...), so
# that the ladder meters all of Kamailio's CPU.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

cmd=${1:-}
[ -n "$cmd" ] || die "usage: $0 start|stop|run --run-dir DIR [options]"
shift
run_dir=""
host=127.0.0.1
port=5070
children=4
shm_mb=512
pkg_mb=64
while [ $# -gt 0 ]; do
  case $1 in
    --run-dir) run_dir=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --children) children=$2; shift 2 ;;
    --shm-mb) shm_mb=$2; shift 2 ;;
    --pkg-mb) pkg_mb=$2; shift 2 ;;
    --bin-dir|--auth) shift 2 ;; # accepted for a uniform interface; Kamailio has neither
    *) die "unknown option $1" ;;
  esac
done

start() {
  ensure_packages kamailio:kamailio ss:iproute2
  [ -f /usr/lib/x86_64-linux-gnu/kamailio/modules/presence.so ] ||
    { ensure_packages __presence_modules__:kamailio-presence-modules 2>/dev/null || true; }
  [ -f /usr/lib/x86_64-linux-gnu/kamailio/modules/presence.so ] ||
    die "kamailio-presence-modules is required"
  [ -n "$run_dir" ] || run_dir=$(mktemp -d /tmp/bench-kamailio.XXXXXX)
  mkdir -p "$run_dir"
  run_dir=$(cd "$run_dir" && pwd)
  require_free_port "$port"

  # db_text tables the presence modules check at start-up; they stay empty
  # (publ_cache=2, subs_db_mode=0), see kamailio.cfg.
  local db="$run_dir/kamailio-db"
  mkdir -p "$db"
  local t
  for t in version presentity active_watchers watchers xcap; do
    cp "/usr/share/kamailio/dbtext/kamailio/$t" "$db/$t"
  done
  sed -e "s|@DB_DIR@|$db|g" -e "s|@LISTEN_ADDR@|$host|g" \
    -e "s|@SIP_PORT@|$port|g" -e "s|@CHILDREN@|$children|g" \
    "$here/kamailio.cfg" >"$run_dir/kamailio.cfg"
  kamailio -c -f "$run_dir/kamailio.cfg" >"$run_dir/kamailio-check.log" 2>&1 ||
    { cat "$run_dir/kamailio-check.log" >&2; die "kamailio.cfg does not parse"; }

  # -DD: stay in the foreground of this script but fork the workers;
  # -E: log to stderr (our log file); -x tlsf -m/-M: the operator's memory settings.
  local pid
  pid=$(spawn "$run_dir" kamailio "$(command -v kamailio)" \
    -f "$run_dir/kamailio.cfg" -DD -E -x tlsf -m "$shm_mb" -M "$pkg_mb" \
    -Y "$run_dir" -P "$run_dir/kamailio.pid")
  if ! wait_tcp "$host" "$port" 30; then
    check_alive "$run_dir" kamailio "$pid" || true
    stop_run_dir "$run_dir"
    die "kamailio does not listen on $host:$port"
  fi
  # Children are forked during start-up; wait until their number settles.
  local n=-1 m
  for _ in $(seq 50); do
    m=$(pgrep -P "$pid" | wc -l)
    [ "$m" -eq "$n" ] && [ "$m" -gt 0 ] && break
    n=$m
    sleep 0.2
  done
  check_alive "$run_dir" kamailio "$pid" || { stop_run_dir "$run_dir"; die "kamailio did not start"; }
  # shellcheck disable=SC2046
  write_env "$run_dir" kamailio "$host" "$port" none "" "$pid" $(pgrep -P "$pid" | sort -n | tr '\n' ' ')
}

case $cmd in
  start) start ;;
  stop) [ -n "$run_dir" ] || die "--run-dir is required"; stop_run_dir "$run_dir" ;;
  run)
    [ -n "$run_dir" ] || run_dir=$(mktemp -d /tmp/bench-kamailio.XXXXXX)
    trap 'stop_run_dir "$run_dir"' EXIT
    trap 'exit 130' INT TERM
    start
    wait_forever
    ;;
  *) die "unknown command $cmd" ;;
esac
