# Shared helpers of the bench/servers scripts (sourced, not run).
#
# A started system lives in a run directory:
#   pids         one "name pid binary" line per process we started (stop order: reverse)
#   meter_pids   the PIDs whose CPU, memory and sockets the ladder meters
#   server.env   SYSTEM, SIP_HOST, SIP_PORT, TARGET, INF (injection file), AUTH
#   *.log        each process's output
# `stop` only ever signals the PIDs listed in `pids`, after checking that the
# PID still runs the binary we started (PIDs are reused).

log() { printf '%s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Installs Debian packages that are missing (by command name -> package).
# Usage: ensure_packages cmd:package [cmd:package ...]
ensure_packages() {
  local missing=() spec cmd pkg
  for spec in "$@"; do
    cmd=${spec%%:*}
    pkg=${spec#*:}
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
  for spec in "$@"; do
    command -v "${spec%%:*}" >/dev/null 2>&1 || die "${spec%%:*} is required and could not be installed"
  done
}

# Fails when something already listens on a TCP or UDP port: a benchmark
# against somebody else's server would measure the wrong thing.
require_free_port() {
  local port=$1
  if ss -Hlntu "( sport = :$port )" 2>/dev/null | grep -q .; then
    die "port $port is already in use (ss -lntup 'sport = :$port' shows by whom); choose another with the port options"
  fi
}

# Waits until host:port accepts TCP connections, or fails after $3 seconds.
wait_tcp() {
  local host=$1 port=$2 timeout=${3:-30} waited=0
  while ! (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; do
    sleep 0.1
    waited=$((waited + 1))
    [ "$waited" -lt $((timeout * 10)) ] || return 1
  done
  return 0
}

# spawn DIR NAME BINARY ARGS... : starts a process in the background with its
# output in DIR/NAME.log and records it in DIR/pids. Prints the PID.
spawn() {
  local dir=$1 name=$2 binary=$3
  shift 3
  [ -x "$binary" ] || die "$binary is not an executable (build it or pass --bin-dir)"
  "$binary" "$@" </dev/null >"$dir/$name.log" 2>&1 &
  local pid=$!
  echo "$name $pid $binary" >>"$dir/pids"
  echo "$pid"
}

# Whether PID still runs BINARY (by /proc/PID/exe, else by its command name).
pid_runs() {
  local pid=$1 binary=$2 exe
  [ -d "/proc/$pid" ] || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
  [ "$exe" = "$(readlink -f "$binary")" ] && return 0
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$(basename "$binary" | cut -c1-15)" ]
}

# Fails with the process's log when it exited during start-up.
check_alive() {
  local dir=$1 name=$2 pid=$3
  if ! kill -0 "$pid" 2>/dev/null; then
    log "$name exited during start-up; its log:"
    tail -n 30 "$dir/$name.log" >&2 || true
    return 1
  fi
}

# Stops every process recorded in DIR/pids: SIGTERM in reverse start order,
# then SIGKILL for those still running after a grace period.
stop_run_dir() {
  local dir=$1 grace=${2:-10}
  [ -f "$dir/pids" ] || return 0
  local lines=() line name pid binary i
  mapfile -t lines <"$dir/pids"
  for ((i = ${#lines[@]} - 1; i >= 0; i--)); do
    read -r name pid binary <<<"${lines[$i]}"
    if pid_runs "$pid" "$binary"; then
      kill -TERM "$pid" 2>/dev/null || true
    fi
  done
  local waited=0
  while [ "$waited" -lt $((grace * 10)) ]; do
    local alive=0
    for line in "${lines[@]}"; do
      read -r name pid binary <<<"$line"
      pid_runs "$pid" "$binary" && alive=1
    done
    [ "$alive" -eq 0 ] && break
    sleep 0.1
    waited=$((waited + 1))
  done
  for line in "${lines[@]}"; do
    read -r name pid binary <<<"$line"
    if pid_runs "$pid" "$binary"; then
      log "$name ($pid) did not stop after ${grace}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  mv "$dir/pids" "$dir/pids.stopped"
}

# Writes DIR/server.env and DIR/meter_pids and prints them for the caller.
write_env() {
  local dir=$1 system=$2 host=$3 port=$4 auth=$5 inf=$6
  shift 6
  echo "$*" >"$dir/meter_pids"
  cat >"$dir/server.env" <<EOF
SYSTEM=$system
SIP_HOST=$host
SIP_PORT=$port
TARGET=$host:$port
AUTH=$auth
INF=$inf
METER_PIDS="$*"
EOF
  cat "$dir/server.env"
}

# Mints bearer tokens for N users with `loadgen tokens` (tools/loadgen) when
# BIN_DIR has it: writes DIR/tokens.csv (sipp injection file) and DIR/jwks.json
# and sets inf, jwks, issuer and audience. Returns 1 without loadgen.
mint_tokens_with_loadgen() {
  local bin_dir=$1 dir=$2 users=$3
  [ -x "$bin_dir/loadgen" ] || return 1
  inf="$dir/tokens.csv"
  jwks="$dir/jwks.json"
  issuer=loadgen
  audience=presence
  "$bin_dir/loadgen" tokens --users "$users" --prefix b --domain example.com \
    --csv "$inf" --jwks "$jwks" --issuer "$issuer" --audience "$audience" >"$dir/loadgen-tokens.log" 2>&1 ||
    { cat "$dir/loadgen-tokens.log" >&2; die "loadgen tokens failed"; }
}

# Keeps a foreground `run` alive until interrupted; the caller's EXIT trap
# stops the processes.
wait_forever() {
  log "running; Ctrl-C stops it"
  while true; do sleep 3600; done
}
