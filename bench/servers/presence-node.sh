#!/usr/bin/env bash
# Starts and stops the single-process presence-node (in-memory backend) on
# loopback for the benchmark.
#
#   bench/servers/presence-node.sh start --run-dir DIR [options]
#   bench/servers/presence-node.sh stop  --run-dir DIR
#   bench/servers/presence-node.sh run   [options]      # foreground, Ctrl-C stops
#
# Options:
#   --bin-dir DIR      where presence-node is (default: target/release)
#   --port N           SIP port, UDP and TCP (default 5080; 5060 is what scripts/run.sh uses)
#   --grpc-ports P,R   presence and registrar gRPC ports (default 50161,50162)
#   --auth none        --insecure-no-auth: the From header is believed (the
#                      comparison with Kamailio, which authenticates nobody)
#   --auth bearer      bearer tokens (default), for --users N users, from (first found):
#                      --inf/--jwks-file/--issuer/--audience given here;
#                      `loadgen tokens` when --bin-dir has loadgen (users b0001...);
#                      else the node's own development issuer (users b1...,
#                      --dev-users/--dev-tokens-csv). The injection file is DIR/tokens.csv.
#   --users N          users with tokens (default 2000; at most 5000 with the
#                      development issuer: they go through one command-line argument)
#   --inf FILE --jwks-file FILE --issuer ISS --audience AUD
#                      external tokens and the key set that signed them
#
# `start` prints DIR/server.env (TARGET, METER_PIDS, INF).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

cmd=${1:-}
[ -n "$cmd" ] || die "usage: $0 start|stop|run --run-dir DIR [options]"
shift
run_dir=""
bin_dir="$repo/target/release"
host=127.0.0.1
port=5080
grpc_ports=50161,50162
auth=bearer
users=2000
inf=""
jwks=""
issuer=""
audience=""
while [ $# -gt 0 ]; do
  case $1 in
    --run-dir) run_dir=$2; shift 2 ;;
    --bin-dir) bin_dir=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --grpc-ports) grpc_ports=$2; shift 2 ;;
    --auth) auth=$2; shift 2 ;;
    --users) users=$2; shift 2 ;;
    --inf) inf=$2; shift 2 ;;
    --jwks-file) jwks=$2; shift 2 ;;
    --issuer) issuer=$2; shift 2 ;;
    --audience) audience=$2; shift 2 ;;
    *) die "unknown option $1" ;;
  esac
done

start() {
  ensure_packages ss:iproute2
  [ -n "$run_dir" ] || run_dir=$(mktemp -d /tmp/bench-presence-node.XXXXXX)
  mkdir -p "$run_dir"
  run_dir=$(cd "$run_dir" && pwd)
  bin_dir=$(cd "$bin_dir" && pwd)
  local presence_port=${grpc_ports%,*} registrar_port=${grpc_ports#*,}
  require_free_port "$port"
  require_free_port "$presence_port"
  require_free_port "$registrar_port"

  # The load comes from one address: no cap on dialogs per source (the
  # ladders hold far more than its default 10,000).
  local args=(--udp "$host:$port" --tcp "$host:$port"
    --presence-listen "$host:$presence_port" --registrar-listen "$host:$registrar_port"
    --max-subscriptions-per-source 0)
  case $auth in
    none) args+=(--insecure-no-auth) ;;
    bearer)
      if [ -z "$jwks" ]; then mint_tokens_with_loadgen "$bin_dir" "$run_dir" "$users" || true; fi
      if [ -n "$jwks" ]; then
        [ -n "$inf" ] && [ -n "$issuer" ] && [ -n "$audience" ] ||
          die "--jwks-file needs --inf, --issuer and --audience"
        args+=(--auth-jwks-file "$jwks" --auth-issuer "$issuer" --auth-audience "$audience")
      else
        [ "$users" -le 5000 ] || die "--users: at most 5000 development users (use loadgen tokens for more)"
        local list
        list=$(seq 1 "$users" | sed 's/.*/b&@example.com/' | paste -sd, -)
        inf="$run_dir/tokens.csv"
        args+=(--dev-users "$list" --dev-tokens-csv "$inf")
      fi
      ;;
    *) die "--auth is none or bearer" ;;
  esac

  # Warnings only, like Kamailio's debug=0: logging per request would be
  # measured as well.
  local pid
  pid=$(RUST_LOG=${RUST_LOG:-warn} spawn "$run_dir" presence-node "$bin_dir/presence-node" "${args[@]}")
  if ! wait_tcp "$host" "$port" 60 || ! wait_tcp "$host" "$presence_port" 30; then
    check_alive "$run_dir" presence-node "$pid" || true
    stop_run_dir "$run_dir"
    die "presence-node does not listen on $host:$port"
  fi
  if [ "$auth" = bearer ] && [ -z "$jwks" ]; then
    for _ in $(seq 100); do [ -s "$inf" ] && break; sleep 0.1; done
    [ -s "$inf" ] || { stop_run_dir "$run_dir"; die "presence-node wrote no $inf"; }
  fi
  write_env "$run_dir" presence-node "$host" "$port" "$auth" "$inf" "$pid"
}

case $cmd in
  start) start ;;
  stop) [ -n "$run_dir" ] || die "--run-dir is required"; stop_run_dir "$run_dir" ;;
  run)
    [ -n "$run_dir" ] || run_dir=$(mktemp -d /tmp/bench-presence-node.XXXXXX)
    trap 'stop_run_dir "$run_dir"' EXIT
    trap 'exit 130' INT TERM
    start
    wait_forever
    ;;
  *) die "unknown command $cmd" ;;
esac
