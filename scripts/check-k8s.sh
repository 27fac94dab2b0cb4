#!/usr/bin/env bash
# Checks the Kubernetes manifests in k8s/ offline, without a cluster:
#
#   1. renders every overlay (k8s/overlays/*) with scripts/k8s_render.py,
#      after that renderer's own test; where `kubectl kustomize` (kustomize
#      5) exists, renders again with it and fails on any difference;
#   2. validates every rendered object against the Kubernetes OpenAPI
#      schemas of the oldest supported (1.30: preStop sleep) and the newest
#      known version, strictly (an unknown field is an error), with PyPI's
#      kubernetes-validate;
#   3. checks the project's rules (scripts/k8s_policy.py: seccomp, non-root,
#      probes, resources, Secrets only in Secrets, every env variable one
#      the binaries read, gRPC authentication on, both ends of gRPC TLS
#      agreeing, default-deny network policy, ...), after proving on broken
#      copies that each rule fires;
#   4. checks the Grafana dashboards in k8s/grafana (scripts/k8s_dashboard.py:
#      JSON, the datasource variable, every metric and label one the
#      processes serve, every family shown; PromQL syntax with promtool
#      where the Debian package prometheus is installed), after proving on
#      broken copies that each check fires.
#
# kubernetes-validate is installed once into a virtualenv under
# target/k8s-check (PyPI); later runs take a few seconds.
#
# Usage: scripts/check-k8s.sh        (exit status 0: every overlay passed)
#   K8S_CHECK_DIR=DIR puts the virtualenv and the renderings elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."

KUBERNETES_VALIDATE_VERSION=1.37.0
KUBERNETES_VERSIONS=(1.30.0 1.37.0)
work="${K8S_CHECK_DIR:-target/k8s-check}"
venv="$work/venv"
out="$work/rendered"

fail() { echo "check-k8s: error: $*" >&2; exit 1; }

# --- tools --------------------------------------------------------------------
installed_version() {
  "$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("kubernetes-validate"))' 2>/dev/null || true
}
if [ "$(installed_version)" != "$KUBERNETES_VALIDATE_VERSION" ]; then
  echo "check-k8s: installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION into $venv"
  rm -rf "$venv"
  mkdir -p "$work"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    # Debian's python3 has venv in a package of its own.
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends python3-venv
    rm -rf "$venv"
    python3 -m venv "$venv" || fail "cannot make a Python virtualenv"
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" ||
    fail "cannot install kubernetes-validate from PyPI"
fi
py="$venv/bin/python"   # has PyYAML, a dependency of kubernetes-validate

# --- 1. render --------------------------------------------------------------------
"$py" scripts/k8s_render.py --self-test
kustomize_cmd=()
if command -v kubectl >/dev/null 2>&1 &&
  kubectl version --client 2>/dev/null | grep -Eq 'Kustomize Version: v[5-9]'; then
  kustomize_cmd=(kubectl kustomize)
fi
rm -rf "$out"
mkdir -p "$out"
overlays=()
rendered=()
for dir in k8s/overlays/*/; do
  if [ -f "$dir/kustomization.yaml" ]; then
    overlays+=("$(basename "$dir")")
    rendered+=("$out/$(basename "$dir").yaml")
  fi
done
[ ${#overlays[@]} -gt 0 ] || fail "no overlay in k8s/overlays"
for overlay in "${overlays[@]}"; do
  "$py" scripts/k8s_render.py "k8s/overlays/$overlay" >"$out/$overlay.yaml" ||
    fail "rendering k8s/overlays/$overlay failed"
  objects=$(grep -c '^kind:' "$out/$overlay.yaml" || true)
  echo "check-k8s: rendered $overlay: $objects objects"
  if [ ${#kustomize_cmd[@]} -gt 0 ]; then
    "${kustomize_cmd[@]}" "k8s/overlays/$overlay" >"$out/$overlay.kustomize.yaml" ||
      fail "kubectl kustomize k8s/overlays/$overlay failed"
    "$py" scripts/k8s_render.py --compare "$out/$overlay.yaml" "$out/$overlay.kustomize.yaml" ||
      fail "scripts/k8s_render.py and kubectl kustomize render $overlay differently"
    echo "check-k8s: $overlay: kubectl kustomize renders the same objects"
  fi
done
[ ${#kustomize_cmd[@]} -gt 0 ] ||
  echo "check-k8s: no kubectl with kustomize 5 here: rendered with scripts/k8s_render.py only"

# --- 2. validate against the schemas -----------------------------------------------
for version in "${KUBERNETES_VERSIONS[@]}"; do
  "$venv/bin/kubernetes-validate" --strict --quiet -k "$version" "${rendered[@]}" ||
    fail "the manifests do not validate against Kubernetes $version"
  echo "check-k8s: every object validates strictly against Kubernetes $version"
done

# --- 3. the project's rules ---------------------------------------------------------
"$py" scripts/k8s_policy.py --self-test "${rendered[@]}"
"$py" scripts/k8s_policy.py "${rendered[@]}" || fail "policy rules broken (above)"
echo "check-k8s: ${#overlays[@]} overlays (${overlays[*]}) pass"

# --- 4. the dashboards ---------------------------------------------------------------
dashboards=(k8s/grafana/*.json)
[ -e "${dashboards[0]}" ] || fail "no dashboard in k8s/grafana"
"$py" scripts/k8s_dashboard.py --self-test "${dashboards[@]}"
"$py" scripts/k8s_dashboard.py "${dashboards[@]}" || fail "dashboard checks broken (above)"
