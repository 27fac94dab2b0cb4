#!/usr/bin/env bash
# Starts and stops the cluster on loopback for the benchmark: redis-server
# (no persistence) + presence + registrar + one edge, the release binaries
# of --bin-dir.
#
#   bench/servers/cluster.sh start --run-dir DIR [options]
#   bench/servers/cluster.sh stop  --run-dir DIR
#   bench/servers/cluster.sh run   [options]      # foreground, Ctrl-C stops
#
# Options:
#   --bin-dir DIR          presence, registrar, edge (default: target/release)
#   --port N               edge SIP port, UDP and TCP (default 5082)
#   --redis-port N         (default 6391)
#   --grpc-ports P,R       presence and registrar gRPC ports (default 50181,50182)
#   --auth none            edge with --insecure-no-auth (the Kamailio comparison)
#   --auth bearer          edge checks bearer tokens: from --inf, --jwks-file,
#                          --issuer, --audience, or minted by `loadgen tokens` for
#                          --users N users (default 2000) when --bin-dir has loadgen
#
# The gRPC API of presence and registrar is left unauthenticated (no
# --auth-* on them, so the edge needs no service token): on loopback, for a
# benchmark only. They log a warning saying so at start. Their token check
# costs one cached validation per call; see bench/README.md.
#
# The load comes from one address: the edge runs without a cap on dialogs
# per source (--max-subscriptions-per-source 0; the ladders and memory.sh
# hold far more than its default 10,000).
#
# METER_PIDS: redis-server, presence, registrar and edge, so the ladder
# charges the whole cluster's CPU and memory.
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
port=5082
redis_port=6391
grpc_ports=50181,50182
auth=none
inf=""
jwks=""
issuer=""
audience=""
users=2000
while [ $# -gt 0 ]; do
  case $1 in
    --run-dir) run_dir=$2; shift 2 ;;
    --bin-dir) bin_dir=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --redis-port) redis_port=$2; shift 2 ;;
    --grpc-ports) grpc_ports=$2; shift 2 ;;
    --auth) auth=$2; shift 2 ;;
    --inf) inf=$2; shift 2 ;;
    --jwks-file) jwks=$2; shift 2 ;;
    --issuer) issuer=$2; shift 2 ;;
    --audience) audience=$2; shift 2 ;;
    --users) users=$2; shift 2 ;;
    *) die "unknown option $1" ;;
  esac
done

start() {
  ensure_packages redis-server:redis-server ss:iproute2
  [ -n "$run_dir" ] || run_dir=$(mktemp -d /tmp/bench-cluster.XXXXXX)
  mkdir -p "$run_dir"
  run_dir=$(cd "$run_dir" && pwd)
  bin_dir=$(cd "$bin_dir" && pwd)
  local presence_port=${grpc_ports%,*} registrar_port=${grpc_ports#*,} p
  for p in "$port" "$redis_port" "$presence_port" "$registrar_port"; do require_free_port "$p"; done

  local edge_auth=()
  case $auth in
    none) edge_auth=(--insecure-no-auth) ;;
    bearer)
      if [ -z "$jwks" ]; then mint_tokens_with_loadgen "$bin_dir" "$run_dir" "$users" || true; fi
      [ -n "$inf" ] && [ -n "$jwks" ] && [ -n "$issuer" ] && [ -n "$audience" ] ||
        die "--auth bearer on the cluster needs loadgen in --bin-dir, or --inf, --jwks-file, --issuer and --audience"
      edge_auth=(--auth-jwks-file "$jwks" --auth-issuer "$issuer" --auth-audience "$audience")
      ;;
    *) die "--auth is none or bearer" ;;
  esac

  local redis_url="redis://$host:$redis_port"
  local redis_pid presence_pid registrar_pid edge_pid
  # No RDB snapshots, no append-only file: state in memory, like the others.
  redis_pid=$(spawn "$run_dir" redis "$(command -v redis-server)" \
    --bind "$host" --port "$redis_port" --save "" --appendonly no \
    --dir "$run_dir" --logfile "" --daemonize no)
  wait_tcp "$host" "$redis_port" 30 || { stop_run_dir "$run_dir"; die "redis-server did not start"; }

  export RUST_LOG=${RUST_LOG:-warn}
  presence_pid=$(spawn "$run_dir" presence "$bin_dir/presence" \
    --listen "$host:$presence_port" --redis-url "$redis_url")
  registrar_pid=$(spawn "$run_dir" registrar "$bin_dir/registrar" \
    --listen "$host:$registrar_port" --redis-url "$redis_url")
  if ! wait_tcp "$host" "$presence_port" 60 || ! wait_tcp "$host" "$registrar_port" 60; then
    check_alive "$run_dir" presence "$presence_pid" || true
    check_alive "$run_dir" registrar "$registrar_pid" || true
    stop_run_dir "$run_dir"
    die "presence or registrar did not start"
  fi
  edge_pid=$(spawn "$run_dir" edge "$bin_dir/edge" \
    --udp "$host:$port" --tcp "$host:$port" --edge-id bench-edge \
    --presence-url "http://$host:$presence_port" --registrar-url "http://$host:$registrar_port" \
    --redis-url "$redis_url" "${edge_auth[@]}" \
    --max-subscriptions-per-source 0)
  if ! wait_tcp "$host" "$port" 60; then
    check_alive "$run_dir" edge "$edge_pid" || true
    stop_run_dir "$run_dir"
    die "edge does not listen on $host:$port"
  fi
  write_env "$run_dir" cluster "$host" "$port" "$auth" "$inf" \
    "$redis_pid" "$presence_pid" "$registrar_pid" "$edge_pid"
}

case $cmd in
  start) start ;;
  stop) [ -n "$run_dir" ] || die "--run-dir is required"; stop_run_dir "$run_dir" ;;
  run)
    [ -n "$run_dir" ] || run_dir=$(mktemp -d /tmp/bench-cluster.XXXXXX)
    trap 'stop_run_dir "$run_dir"' EXIT
    trap 'exit 130' INT TERM
    start
    wait_forever
    ;;
  *) die "unknown command $cmd" ;;
esac
