#!/usr/bin/env bash
# Builds the project's container images from this machine alone: no base
# image is pulled, no registry is needed.
#
#   presence-base:local   a minimal root filesystem holding exactly the
#                         shared libraries `ldd` lists for the binaries, CA
#                         certificates and a non-root user, made with
#                         `docker import`
#   presence:local        the root Dockerfile on top of it: presence-cluster
#                         (edge, presence, registrar, presence-node in one
#                         executable, linked under each name) and presencectl
#   presence-redis:local  redis-server from this machine's Debian package,
#                         with its libraries, persistence off
#
# Every image is also tagged with a hash of what went into it; when nothing
# changed the script only re-points the `local` tags (a second or two).
#
# Usage: scripts/build-images.sh [--profile debug|release]
#   The binaries are taken from ${CARGO_TARGET_DIR:-target}/<profile>
#   (default: debug, what `cargo build --workspace --bins` makes). Production
#   images use `cargo build --release --workspace --bins` and
#   `--profile release`: same Dockerfile, same base.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=debug
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="${2:?--profile needs debug or release}"; shift 2 ;;
    --release) profile=release; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "error: unknown argument $1" >&2; exit 2 ;;
  esac
done

fail() { echo "error: $*" >&2; exit 1; }

command -v docker >/dev/null 2>&1 ||
  fail "docker is not installed: the container images and tests need a Docker engine"
docker info >/dev/null 2>&1 ||
  fail "the Docker engine does not answer (is the daemon running, may this user use it?)"
command -v ldd >/dev/null 2>&1 || fail "ldd is missing (Debian package libc-bin)"
command -v redis-server >/dev/null 2>&1 ||
  fail "redis-server is missing (Debian package redis-server): the Redis image is made from it"

target_dir="${CARGO_TARGET_DIR:-target}"
bin_dir="$target_dir/$profile"
# One executable for every process (linked under each name in the image),
# and the command-line client.
binaries=(presence-cluster presencectl)
linked=(edge presence registrar presence-node)
for b in "${binaries[@]}"; do
  [ -x "$bin_dir/$b" ] || fail "$bin_dir/$b is missing: run 'cargo build --workspace --bins$([ "$profile" = release ] && echo ' --release')' first"
done
work="$target_dir/images"
mkdir -p "$work"
# One build at a time (test processes may ask together).
exec 9>"$work/.lock"
flock 9

# The shared libraries (and the dynamic loader) a set of executables needs,
# one absolute path per line.
libraries() {
  local out
  for exe in "$@"; do
    out=$(ldd "$exe") || fail "ldd $exe failed (not a dynamic executable?)"
    if grep -q "not found" <<<"$out"; then
      fail "$exe needs a library this machine lacks: $(grep 'not found' <<<"$out")"
    fi
    awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$out"
  done | sort -u
}

# A hash of the files' contents (not of their names: the script may be run
# by a relative or an absolute path).
hash_of() { sha256sum "$@" | cut -d' ' -f1 | sha256sum | cut -c1-16; }

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# Copies files into a root filesystem at their own paths, symlinks resolved.
install_files() {
  local root="$1"; shift
  for f in "$@"; do
    mkdir -p "$root$(dirname "$f")"
    cp -L "$f" "$root$f"
  done
}

# Directories, users and name resolution every image needs.
skeleton() {
  local root="$1"
  mkdir -p "$root"/{etc,tmp,data,usr/local/bin,etc/ssl/certs}
  chmod 1777 "$root/tmp" "$root/data"
  cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
redis:x:999:999:redis:/data:/sbin/nologin
presence:x:65532:65532:presence:/tmp:/sbin/nologin
EOF
  cat >"$root/etc/group" <<'EOF'
root:x:0:
redis:x:999:
presence:x:65532:
EOF
  echo "hosts: files dns" >"$root/etc/nsswitch.conf"
  if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
  fi
}

import_rootfs() {
  local root="$1" image="$2"; shift 2
  tar --numeric-owner --owner=0 --group=0 -C "$root" -c . | docker import "$@" - "$image" >/dev/null
}

# --- presence-base -----------------------------------------------------------
mapfile -t base_libs < <(libraries "${binaries[@]/#/$bin_dir/}")
base_tag="presence-base:$(hash_of "${base_libs[@]}" "$0")"
if image_exists "$base_tag"; then
  echo "up to date: $base_tag"
else
  echo "building $base_tag from ${#base_libs[@]} host libraries"
  root="$work/base-rootfs"
  rm -rf "$root"
  skeleton "$root"
  install_files "$root" "${base_libs[@]}"
  import_rootfs "$root" "$base_tag" \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
    --change 'USER 65532:65532' \
    --change 'WORKDIR /tmp'
  rm -rf "$root"
fi
docker tag "$base_tag" presence-base:local

# --- presence (the Dockerfile) -------------------------------------------------
# Hashing a few hundred megabytes of binaries takes a while on a busy
# machine: the content hash is remembered per (path, size, mtime).
bin_paths=("${binaries[@]/#/$bin_dir/}")
stamp=$(stat -c '%n %s %Y' "${bin_paths[@]}" Dockerfile "$0" | sha256sum | cut -c1-16)
if [ -f "$work/content-hash.$stamp" ]; then
  content_hash=$(cat "$work/content-hash.$stamp")
else
  content_hash=$(hash_of "${bin_paths[@]}" Dockerfile "$0")
  rm -f "$work"/content-hash.*
  echo "$content_hash" >"$work/content-hash.$stamp"
fi
app_hash=$(echo "$content_hash $base_tag" | sha256sum | cut -c1-16)
app_tag="presence:$app_hash"
if image_exists "$app_tag"; then
  echo "up to date: $app_tag"
else
  echo "building $app_tag from $bin_dir"
  context="$work/context"
  rm -rf "$context"
  mkdir -p "$context/bin"
  for b in "${binaries[@]}"; do
    # Debug information stays in the build tree; symbols stay for backtraces.
    if command -v strip >/dev/null 2>&1; then
      strip --strip-debug -o "$context/bin/$b" "$bin_dir/$b"
    else
      cp "$bin_dir/$b" "$context/bin/$b"
    fi
  done
  for name in "${linked[@]}"; do
    ln -s presence-cluster "$context/bin/$name"
  done
  # The classic builder: it needs no buildx plugin and uses the local base.
  if ! out=$(DOCKER_BUILDKIT=0 docker build -f Dockerfile \
    --build-arg BASE="$base_tag" -t "$app_tag" "$context" 2>&1); then
    echo "$out" >&2
    fail "docker build of $app_tag failed"
  fi
  rm -rf "$context"
fi
docker tag "$app_tag" presence:local

# --- presence-redis --------------------------------------------------------------
redis_bin=$(readlink -f "$(command -v redis-server)")
mapfile -t redis_libs < <(libraries "$redis_bin")
redis_tag="presence-redis:$(hash_of "$redis_bin" "${redis_libs[@]}" "$0")"
if image_exists "$redis_tag"; then
  echo "up to date: $redis_tag"
else
  echo "building $redis_tag from $redis_bin"
  root="$work/redis-rootfs"
  rm -rf "$root"
  skeleton "$root"
  install_files "$root" "${redis_libs[@]}"
  mkdir -p "$root/usr/bin"
  cp -L "$redis_bin" "$root/usr/bin/redis-server"
  # No persistence: a restart loses everything, the case the services must
  # survive. Mount a volume and pass --appendonly yes to keep data.
  import_rootfs "$root" "$redis_tag" \
    --change 'USER 999:999' \
    --change 'WORKDIR /data' \
    --change 'EXPOSE 6379/tcp' \
    --change 'ENTRYPOINT ["/usr/bin/redis-server"]' \
    --change 'CMD ["--bind", "0.0.0.0", "--port", "6379", "--protected-mode", "no", "--save", "", "--appendonly", "no"]'
  rm -rf "$root"
fi
docker tag "$redis_tag" presence-redis:local

# Older builds' hash tags are removed, so that rebuilds do not pile up.
prune() {
  local repo="$1" keep="$2" tag
  for tag in $(docker images "$repo" --format '{{.Tag}}'); do
    if [ "$tag" != local ] && [ "$tag" != "$keep" ]; then
      docker rmi "$repo:$tag" >/dev/null 2>&1 || true
    fi
  done
}
prune presence "${app_tag#presence:}"
prune presence-base "${base_tag#presence-base:}"
prune presence-redis "${redis_tag#presence-redis:}"

echo "images: presence:local ($app_tag) presence-base:local ($base_tag) presence-redis:local ($redis_tag)"
