#!/usr/bin/env python3
"""The rules every rendered overlay of k8s/ must keep, beyond what the
Kubernetes schemas check. Run by scripts/check-k8s.sh:

    python3 scripts/k8s_policy.py RENDERED.yaml...

Each file is one overlay as `kustomize build` renders it. Prints every
broken rule and exits 1 if there is any.

What is checked, and why:
- Every container of every workload: seccomp RuntimeDefault, non-root, no
  privilege escalation, read-only root filesystem, every capability
  dropped, CPU and memory requests and a memory limit; pods do not mount a
  service account token and use no host namespaces or host paths.
- Deployments and StatefulSets: readiness and liveness probes (a probe
  of the metrics port needs METRICS_LISTEN, or it never answers); every
  Deployment has a HorizontalPodAutoscaler, a PodDisruptionBudget, topology
  spread constraints and a preStop hook.
- Secrets stay secret: ConfigMaps hold no secret-looking key, private key or
  URL with a password; container env entries whose names look secret come
  from a Secret, not a literal; committed Secrets hold only CHANGE-ME
  placeholders, so real values never enter the repository.
- Configuration the binaries really read: every env entry of the edge,
  presence and registrar containers names a variable their command-line
  definitions declare (clap `env = "..."` in the binary's `Args` and every
  struct it flattens, followed through the workspace's crates), or one
  read with std::env::var; a wrong name would be ignored or, for a
  required one, crash-loop the pod. `$(VAR)` references resolve to a
  variable defined earlier in the list (Kubernetes leaves them unexpanded
  otherwise). Every `*_FILE` path lies in a mounted volume, and a Secret
  volume has the key it names.
- gRPC TLS agrees on both ends: an edge uses https:// exactly for services
  that serve TLS and has a client certificate when they require one; a
  TLS server is never probed with the kubelet's gRPC probe (plaintext
  only, so it would never pass).
- Locked down by default: the presence and registrar APIs have a token
  provider, every edge has a service token source, and there is a
  default-deny NetworkPolicy.

    python3 scripts/k8s_policy.py --self-test RENDERED.yaml...

breaks the renderings in every way the rules must catch and fails unless
each is caught (each breakage in the renderings it applies to, at least
one).
"""

import base64
import functools
import os
import re
import sys

import yaml

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}

# Where each binary's command line is defined: the clap struct it parses.
# Its variables are those of that struct and, transitively, of every struct
# it flattens (`#[command(flatten)] field: path::Type`), resolved through
# the workspace's crates; plus what the binary's crate reads with
# std::env::var. Following the flattens (rather than listing files) keeps
# the check exact: an edge reads REDIS_CA_FILE but not GRPC_TLS_CERT_FILE,
# although both are defined in crates/runtime.
BINARY_ARGS = {
    "edge": "services/edge/src/command.rs#Args",
    "presence": "services/presence/src/command.rs#Args",
    "registrar": "services/registrar/src/command.rs#Args",
}
# The single executable of the image runs the one named by its first
# argument (`presence-cluster edge ...`) or by the link it is started as.
MULTI_CALL = "presence-cluster"
# Read with std::env::var by every binary (logging set-up).
COMMON_SOURCES = ["crates/runtime/src", "crates/telemetry/src"]
# Read by tracing-subscriber's EnvFilter, not by name in this code.
IMPLICIT = {"RUST_LOG"}

SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|PRIVATE|CREDENTIAL|TOKEN|API_KEY", re.I)
NOT_SECRET_SUFFIX = re.compile(r"_(URL|FILE|ID|SCOPE|AUDIENCE|METHOD)$", re.I)
URL_WITH_PASSWORD = re.compile(r"://[^/@\s]*:([^/@\s]+)@")
VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
PLACEHOLDER = "CHANGE-ME"

ENV_ATTR = re.compile(r'\benv\s*=\s*"([A-Z0-9_]+)"')
ENV_VAR_CALL = re.compile(r'env::var(?:_os)?\(\s*"([A-Z0-9_]+)"')
STRUCT = re.compile(r"^(?:pub(?:\([^)]*\))?\s+)?struct\s+(\w+)\s*\{(.*?)^\}", re.S | re.M)
FLATTEN = re.compile(r"#\[(?:command|clap)\(flatten\)\]\s*(?:(?:#\[[^\]]*\]|///[^\n]*)\s*)*(?:pub(?:\([^)]*\))?\s+)?\w+\s*:\s*([\w:]+)")


def looks_secret(name):
    return bool(SECRET_NAME.search(name)) and not NOT_SECRET_SUFFIX.search(name)


def rust_files(rel):
    path = os.path.join(ROOT, rel)
    if os.path.isfile(path):
        return [path]
    files = []
    for dirpath, _, filenames in os.walk(path):
        files += [os.path.join(dirpath, f) for f in filenames if f.endswith(".rs")]
    return sorted(files)


def crate_dirs():
    """Crate name as used in paths (`grpc_auth`) -> its directory."""
    dirs = {}
    for group in ("crates", "services"):
        for entry in sorted(os.listdir(os.path.join(ROOT, group))):
            manifest = os.path.join(ROOT, group, entry, "Cargo.toml")
            if not os.path.isfile(manifest):
                continue
            with open(manifest, encoding="utf-8") as f:
                match = re.search(r'^name\s*=\s*"([^"]+)"', f.read(), re.M)
            if match:
                dirs[match.group(1).replace("-", "_")] = os.path.join(group, entry)
    return dirs


def crate_of(rel_file, dirs):
    for name, directory in dirs.items():
        if rel_file.startswith(directory + "/"):
            return name
    raise SystemExit(f"policy: {rel_file} is in no crate of the workspace")


@functools.lru_cache(maxsize=None)
def struct_index_cached():
    dirs = crate_dirs()
    return dirs, struct_index(dirs)


def struct_index(dirs):
    """(crate, struct name) -> (file, env names, flattened type paths)."""
    index = {}
    for crate, directory in dirs.items():
        for file in rust_files(os.path.join(directory, "src")):
            with open(file, encoding="utf-8") as f:
                text = f.read()
            for match in STRUCT.finditer(text):
                body = match.group(2)
                index[(crate, match.group(1))] = (
                    os.path.relpath(file, ROOT),
                    set(ENV_ATTR.findall(body)),
                    FLATTEN.findall(body),
                )
    return index


def resolve(type_path, from_crate, index):
    """The (crate, struct) a flattened field's type names: `crate::X` and
    bare `X` in the same crate (or the only struct of that name), `krate::X`
    in that crate."""
    parts = type_path.split("::")
    name = parts[-1]
    if len(parts) > 1 and parts[0] not in ("crate", "self", "super"):
        candidates = [(parts[0], name)]
    else:
        candidates = [(from_crate, name)] + sorted(k for k in index if k[1] == name and k[0] != from_crate)
    for key in candidates:
        if key in index:
            return key
    raise SystemExit(f"policy: cannot find struct {type_path} (flattened in crate {from_crate})")


def declared_env(binary, index, dirs):
    """Every variable `binary` reads."""
    rel, _, struct = BINARY_ARGS[binary].partition("#")
    root = (crate_of(rel, dirs), struct)
    if root not in index or index[root][0] != rel:
        raise SystemExit(f"policy: struct {struct} not found in {rel}")
    names, todo, seen = set(IMPLICIT), [root], set()
    while todo:
        key = todo.pop()
        if key in seen:
            continue
        seen.add(key)
        _, env, flattened = index[key]
        names |= env
        todo += [resolve(path, key[0], index) for path in flattened]
    for rel_dir in COMMON_SOURCES + [os.path.join(dirs[root[0]], "src")]:
        for file in rust_files(rel_dir):
            with open(file, encoding="utf-8") as f:
                names.update(ENV_VAR_CALL.findall(f.read()))
    return names


class Checker:
    def __init__(self, source):
        self.source = source
        self.errors = []
        dirs, index = struct_index_cached()
        self.env_by_binary = {binary: declared_env(binary, index, dirs) for binary in BINARY_ARGS}

    def fail(self, obj, message):
        meta = obj.get("metadata", {})
        self.errors.append(f"{self.source}: {obj['kind']}/{meta.get('name')}: {message}")

    def run(self, objects):
        self.objects = objects
        self.configmaps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
        self.secrets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Secret"}
        for obj in objects:
            kind = obj["kind"]
            if kind in WORKLOADS:
                self.workload(obj)
            elif kind == "ConfigMap":
                self.configmap(obj)
            elif kind == "Secret":
                self.secret(obj)
        self.cluster_rules()

    # --- workloads ---------------------------------------------------------

    def workload(self, obj):
        template = obj["spec"]["template"] if obj["kind"] != "CronJob" else obj["spec"]["jobTemplate"]["spec"]["template"]
        pod = template["spec"]
        pod_sc = pod.get("securityContext", {})
        if pod.get("automountServiceAccountToken") is not False:
            self.fail(obj, "automountServiceAccountToken must be false (nothing here calls the Kubernetes API)")
        for field in ("hostNetwork", "hostPID", "hostIPC"):
            if pod.get(field):
                self.fail(obj, f"{field} is set")
        for volume in pod.get("volumes", []):
            if "hostPath" in volume:
                self.fail(obj, f"volume {volume['name']} is a hostPath")
        containers = pod.get("containers", []) + pod.get("initContainers", [])
        for c in containers:
            self.container(obj, pod_sc, c)
        if obj["kind"] in ("Deployment", "StatefulSet"):
            for c in pod.get("containers", []):
                for probe in ("readinessProbe", "livenessProbe"):
                    if probe not in c:
                        self.fail(obj, f"container {c['name']} has no {probe}")
        if obj["kind"] == "Deployment":
            if not pod.get("topologySpreadConstraints"):
                self.fail(obj, "no topologySpreadConstraints")
            for c in pod.get("containers", []):
                if "preStop" not in c.get("lifecycle", {}):
                    self.fail(obj, f"container {c['name']} has no preStop hook")

    def container(self, obj, pod_sc, c):
        name = c["name"]
        sc = c.get("securityContext", {})

        def effective(field):
            return sc.get(field, pod_sc.get(field))

        seccomp = (effective("seccompProfile") or {}).get("type")
        if seccomp != "RuntimeDefault":
            self.fail(obj, f"container {name}: seccompProfile is {seccomp}, not RuntimeDefault")
        if effective("runAsNonRoot") is not True:
            self.fail(obj, f"container {name}: runAsNonRoot is not true")
        if effective("runAsUser") == 0:
            self.fail(obj, f"container {name}: runs as user 0")
        if sc.get("allowPrivilegeEscalation") is not False:
            self.fail(obj, f"container {name}: allowPrivilegeEscalation is not false")
        if sc.get("readOnlyRootFilesystem") is not True:
            self.fail(obj, f"container {name}: readOnlyRootFilesystem is not true")
        if sc.get("privileged"):
            self.fail(obj, f"container {name}: privileged")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []) or caps.get("add"):
            self.fail(obj, f"container {name}: capabilities must drop ALL and add none")
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            handler = c.get(probe, {})
            port = next((h.get("port") for h in handler.values() if isinstance(h, dict) and "port" in h), None)
            if port in ("metrics", 9090) and "METRICS_LISTEN" not in {e["name"] for e in c.get("env", [])}:
                self.fail(obj, f"container {name}: {probe} uses the metrics port, but METRICS_LISTEN is not set")
        resources = c.get("resources", {})
        for kind_, resource in (("requests", "cpu"), ("requests", "memory"), ("limits", "memory")):
            if resource not in resources.get(kind_, {}):
                self.fail(obj, f"container {name}: no {kind_}.{resource}")
        self.environment(obj, c)

    def environment(self, obj, c):
        name = c["name"]
        defined = set()
        for source in c.get("envFrom", []):
            if "configMapRef" in source:
                ref = source["configMapRef"]["name"]
                cm = self.configmaps.get(ref)
                if cm is None:
                    self.fail(obj, f"container {name}: envFrom ConfigMap {ref} does not exist")
                else:
                    defined.update(cm.get("data", {}))
            elif "secretRef" in source:
                ref = source["secretRef"]["name"]
                secret = self.secrets.get(ref)
                if secret is None:
                    self.fail(obj, f"container {name}: envFrom Secret {ref} does not exist")
                else:
                    defined.update(secret.get("stringData", {}))
                    defined.update(secret.get("data", {}))
        from_env_from = set(defined)
        env = c.get("env", [])
        referenced = set()
        for entry in env:
            value = entry.get("value")
            if isinstance(value, str):
                for ref in VAR_REF.findall(value):
                    referenced.add(ref)
                    if ref not in defined:
                        self.fail(obj, f"container {name}: env {entry['name']} uses $({ref}), not defined before it")
                if looks_secret(entry["name"]):
                    self.fail(obj, f"container {name}: env {entry['name']} is a literal; take it from a Secret")
                match = URL_WITH_PASSWORD.search(value)
                if match and not VAR_REF.fullmatch(match.group(1)):
                    self.fail(obj, f"container {name}: env {entry['name']} holds a password literally")
            key_ref = entry.get("valueFrom", {}).get("secretKeyRef")
            if key_ref:
                secret = self.secrets.get(key_ref["name"])
                keys = set() if secret is None else set(secret.get("stringData", {})) | set(secret.get("data", {}))
                if key_ref["key"] not in keys and not key_ref.get("optional"):
                    self.fail(obj, f"container {name}: env {entry['name']} needs Secret {key_ref['name']} key {key_ref['key']}, which is not there")
            defined.add(entry["name"])
        for part in c.get("command", []) + c.get("args", []):
            for ref in VAR_REF.findall(str(part)):
                referenced.add(ref)
                if ref not in defined:
                    self.fail(obj, f"container {name}: command or args use $({ref}), which no env defines")
        binary = binary_of(c)
        self.files_mounted(obj, c)
        if binary in self.env_by_binary:
            known = self.env_by_binary[binary]
            for var in sorted(defined):
                if var not in known and var not in referenced:
                    self.fail(obj, f"container {name}: {binary} reads no variable {var} (a typo, or a flag that does not exist)")
            self.authentication(obj, name, binary, defined)
        elif c.get("image", "").split("/")[-1].startswith("presence:"):
            self.fail(obj, f"container {name}: runs the presence image with a command this check does not know: {c.get('command')}")

    def files_mounted(self, obj, c):
        """Every `*_FILE` path is inside a volume mounted in the container
        and, for a Secret volume, names a key the Secret has: otherwise the
        process fails at start reading it (or, for an optional file, runs
        without it)."""
        pod = obj["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for entry in c.get("env", []):
            path = entry.get("value")
            if not entry["name"].endswith("_FILE") or not isinstance(path, str) or not path.startswith("/"):
                continue
            mount = next(
                (m for m in c.get("volumeMounts", []) if path.startswith(m["mountPath"].rstrip("/") + "/")),
                None,
            )
            if mount is None:
                self.fail(obj, f"container {c['name']}: env {entry['name']} is {path}, which no volume mounts")
                continue
            source = volumes.get(mount["name"], {}).get("secret")
            if not source or source.get("optional"):
                continue
            secret = self.secrets.get(source["secretName"])
            if secret is None:
                continue  # made outside these manifests (cert-manager, a secrets manager)
            relative = path[len(mount["mountPath"].rstrip("/")) + 1:]
            items = {i["path"]: i["key"] for i in source.get("items", [])}
            key = items.get(relative, relative if not items else None)
            keys = set(secret.get("stringData") or {}) | set(secret.get("data") or {})
            if key not in keys:
                self.fail(obj, f"container {c['name']}: env {entry['name']} is {path}, but Secret {source['secretName']} has no key for it")

    def authentication(self, obj, name, binary, defined):
        providers = {"AUTH_JWKS_FILE", "AUTH_JWKS_URL", "AUTH_DISCOVERY_URL", "AUTH_INTROSPECTION_URL"}
        if binary in ("presence", "registrar") and not defined & providers:
            self.fail(obj, f"container {name}: the gRPC API has no token provider (one of {sorted(providers)}): it would be open")
        if binary == "edge":
            if not defined & {"SERVICE_TOKEN", "SERVICE_TOKEN_FILE", "SERVICE_TOKEN_URL"}:
                self.fail(obj, f"container {name}: the edge has no service token for the authenticated services")
            if "AUTH_DISABLED" in defined:
                self.fail(obj, f"container {name}: SIP authentication is disabled")

    # --- configuration and secrets ---------------------------------------

    def configmap(self, obj):
        for key, value in (obj.get("data") or {}).items():
            if looks_secret(key):
                self.fail(obj, f"key {key} looks secret: put it in a Secret")
            text = str(value)
            if "-----BEGIN" in text and "PRIVATE KEY" in text:
                self.fail(obj, f"key {key} holds a private key")
            if URL_WITH_PASSWORD.search(text):
                self.fail(obj, f"key {key} holds a URL with a password")

    def secret(self, obj):
        values = dict(obj.get("stringData") or {})
        for key, value in (obj.get("data") or {}).items():
            try:
                values[key] = base64.b64decode(value).decode("utf-8", "replace")
            except ValueError:
                self.fail(obj, f"key {key} is not base64")
        for key, value in values.items():
            if not str(value).startswith(PLACEHOLDER):
                self.fail(obj, f"key {key} is not a {PLACEHOLDER} placeholder: real secrets stay out of the repository")

    # --- the whole overlay -------------------------------------------------

    def cluster_rules(self):
        deny = [
            o
            for o in self.objects
            if o["kind"] == "NetworkPolicy"
            and o["spec"].get("podSelector") == {}
            and set(o["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
            and not o["spec"].get("ingress")
            and not o["spec"].get("egress")
        ]
        if not deny:
            self.errors.append(f"{self.source}: no default-deny NetworkPolicy (podSelector {{}}, Ingress and Egress, no rules)")
        self.grpc_tls()
        for dep in (o for o in self.objects if o["kind"] == "Deployment"):
            name = dep["metadata"]["name"]
            labels = dep["spec"]["template"]["metadata"].get("labels", {})
            hpa = [
                o
                for o in self.objects
                if o["kind"] == "HorizontalPodAutoscaler"
                and o["spec"]["scaleTargetRef"].get("kind") == "Deployment"
                and o["spec"]["scaleTargetRef"].get("name") == name
            ]
            if not hpa:
                self.fail(dep, "no HorizontalPodAutoscaler")
            if "replicas" in dep["spec"] and hpa:
                self.fail(dep, "sets replicas although an autoscaler owns the count")
            pdb = [
                o
                for o in self.objects
                if o["kind"] == "PodDisruptionBudget"
                and all(labels.get(k) == v for k, v in o["spec"]["selector"].get("matchLabels", {}).items())
            ]
            if not pdb:
                self.fail(dep, "no PodDisruptionBudget")


    def grpc_tls(self):
        """The edges and the services agree on TLS: an edge calls a service
        over https:// exactly when the service serves TLS, and presents a
        client certificate when the service requires one. A service serving
        TLS is not probed with the kubelet's gRPC probe, which speaks
        plaintext only and so would never pass."""
        containers = [
            (obj, c)
            for obj in self.objects
            if obj["kind"] in ("Deployment", "StatefulSet")
            for c in obj["spec"]["template"]["spec"].get("containers", [])
        ]
        services = {}
        for obj, c in containers:
            binary = binary_of(c)
            if binary not in ("presence", "registrar"):
                continue
            tls = env_value(c, "GRPC_TLS_CERT_FILE") is not None
            services[binary] = (tls, env_value(c, "GRPC_CLIENT_CA_FILE") is not None)
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                if tls and "grpc" in c.get(probe, {}):
                    self.fail(obj, f"container {c['name']}: {probe} is a gRPC probe, which cannot speak TLS: probe /readyz on the metrics port")
        for obj, c in containers:
            if binary_of(c) != "edge":
                continue
            for service, variable in (("presence", "PRESENCE_URL"), ("registrar", "REGISTRAR_URL")):
                if service not in services:
                    continue
                tls, mutual = services[service]
                urls = [u.strip() for u in str(env_value(c, variable) or "").split(",") if u.strip()]
                for url in urls:
                    if url.startswith("https://") != tls:
                        self.fail(obj, f"container {c['name']}: {variable} {url} is {'plaintext' if tls else 'TLS'}, but {service} serves {'TLS' if tls else 'plaintext'}")
                if mutual and env_value(c, "GRPC_CERT_FILE") is None:
                    self.fail(obj, f"container {c['name']}: {service} requires client certificates (GRPC_CLIENT_CA_FILE), but GRPC_CERT_FILE is not set")


def binary_of(container):
    """Which of the project's programs a container runs: the base name of
    its command, or for the image's single executable the program it is
    told to run."""
    argv = list(container.get("command") or []) + list(container.get("args") or [])
    if not argv:
        return ""
    binary = os.path.basename(argv[0])
    if binary == MULTI_CALL and len(argv) > 1:
        return argv[1]
    return binary


def env_value(container, name):
    return next((e.get("value") for e in container.get("env", []) if e["name"] == name), None)


def container_of(objects, kind, name):
    obj = next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)
    return obj["spec"]["template"]["spec"]["containers"][0]


def env_entry(container, name):
    return next(e for e in container["env"] if e["name"] == name)


def seccomp_off(objects, name):
    dep = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == name)
    dep["spec"]["template"]["spec"]["securityContext"].pop("seccompProfile")
    container_of(objects, "Deployment", name)["securityContext"].pop("seccompProfile")


# Breakages each rule must catch: (what is broken, how, words of the error).
MUTATIONS = [
    ("seccomp off", lambda o: seccomp_off(o, "edge"), "not RuntimeDefault"),
    ("writable root", lambda o: container_of(o, "Deployment", "presence")["securityContext"].update(readOnlyRootFilesystem=False),
     "readOnlyRootFilesystem"),
    ("no probe", lambda o: container_of(o, "Deployment", "registrar").pop("readinessProbe"), "no readinessProbe"),
    ("no resources", lambda o: container_of(o, "Deployment", "edge").pop("resources"), "no requests.cpu"),
    ("no preStop", lambda o: container_of(o, "Deployment", "edge").pop("lifecycle"), "no preStop"),
    ("secret in a ConfigMap", lambda o: next(x for x in o if x["kind"] == "ConfigMap")["data"].update(SERVICE_CLIENT_SECRET="s3cret"),
     "looks secret"),
    ("literal secret env", lambda o: env_entry(container_of(o, "Deployment", "edge"), "SERVICE_CLIENT_SECRET").update(value="s3cret", valueFrom=None),
     "is a literal"),
    ("real secret committed", lambda o: next(x for x in o if x["kind"] == "Secret")["stringData"].update(extra="hunter2"),
     "placeholder"),
    ("misspelt variable", lambda o: container_of(o, "Deployment", "edge")["env"].append({"name": "EDGE_DRAIN_GRACE", "value": "1"}),
     "reads no variable EDGE_DRAIN_GRACE"),
    ("variable of another binary", lambda o: container_of(o, "Deployment", "presence")["env"].append({"name": "SIP_UDP", "value": "0.0.0.0:5060"}),
     "reads no variable SIP_UDP"),
    ("reference before definition", lambda o: container_of(o, "Deployment", "registrar")["env"].insert(0, container_of(o, "Deployment", "registrar")["env"].pop(
        [e["name"] for e in container_of(o, "Deployment", "registrar")["env"]].index("REDIS_URL"))),
     "not defined before it"),
    ("open gRPC API", lambda o: [c["envFrom"].clear() for c in [container_of(o, "Deployment", "presence")]],
     "no token provider"),
    ("no default deny", lambda o: o.remove(next(x for x in o if x["kind"] == "NetworkPolicy" and x["metadata"]["name"] == "default-deny")),
     "no default-deny"),
    ("probe on a metrics port that is off", lambda o: container_of(o, "Deployment", "edge")["env"].remove(
        env_entry(container_of(o, "Deployment", "edge"), "METRICS_LISTEN")), "METRICS_LISTEN is not set"),
    ("no autoscaler", lambda o: o.remove(next(x for x in o if x["kind"] == "HorizontalPodAutoscaler")), "no HorizontalPodAutoscaler"),
    ("variable of the services on the edge", lambda o: container_of(o, "Deployment", "edge")["env"].append(
        {"name": "GRPC_TLS_CERT_FILE", "value": "/etc/presence/digest/users"}), "reads no variable GRPC_TLS_CERT_FILE"),
    ("file outside every mount", lambda o: env_entry(container_of(o, "Deployment", "edge"), "AUTH_DIGEST_HA1_FILE").update(value="/etc/elsewhere/users"),
     "which no volume mounts"),
    ("file the Secret lacks", lambda o: secret_keys(o, "redis-tls").pop("ca.crt"), "has no key for it"),
    ("gRPC probe on a TLS server", lambda o: serving_tls(o, "presence").update(readinessProbe={"grpc": {"port": 50051}}),
     "cannot speak TLS"),
    ("plaintext URL to a TLS service", lambda o: [serving_tls(o, "registrar"), env_entry(container_of(o, "Deployment", "edge"), "REGISTRAR_URL").update(
        value="http://registrar:50052")], "but registrar serves TLS"),
    ("TLS URL to a plaintext service", lambda o: [serving_plaintext(o, "presence"), env_entry(container_of(o, "Deployment", "edge"), "PRESENCE_URL").update(
        value="https://presence:50051")], "but presence serves plaintext"),
    ("no client certificate for mutual TLS", lambda o: container_of(o, "Deployment", "edge")["env"].remove(
        env_entry(container_of(o, "Deployment", "edge"), "GRPC_CERT_FILE")), "GRPC_CERT_FILE is not set"),
]


def secret_keys(objects, name):
    return next(o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"] == name)["stringData"]


def serving_tls(objects, name):
    """The container of `name` when it serves gRPC over TLS (else the
    mutation does not apply to this rendering)."""
    c = container_of(objects, "Deployment", name)
    if env_value(c, "GRPC_TLS_CERT_FILE") is None:
        raise LookupError(f"{name} serves plaintext here")
    return c


def serving_plaintext(objects, name):
    c = container_of(objects, "Deployment", name)
    if env_value(c, "GRPC_TLS_CERT_FILE") is not None:
        raise LookupError(f"{name} serves TLS here")
    return c


def self_test(paths):
    """Breaks good renderings in each way of MUTATIONS and fails unless
    the checker reports exactly that. A mutation applies to the renderings
    that have what it breaks (the TLS ones only to an overlay with TLS);
    each must apply to at least one, and be caught wherever it applies."""
    import copy

    renderings = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            good = [o for o in yaml.safe_load_all(f) if o]
        checker = Checker(path)
        checker.run(copy.deepcopy(good))
        if checker.errors:
            print(f"policy self-test: {path} is not clean to start with: {checker.errors}")
            return 1
        renderings.append((path, good))
    failed = 0
    for what, mutate, expected in MUTATIONS:
        applied = 0
        for path, good in renderings:
            objects = copy.deepcopy(good)
            try:
                mutate(objects)
            except (LookupError, StopIteration, ValueError):
                continue  # nothing of the kind in this rendering
            applied += 1
            for obj in objects:  # a None left by a mutation means "absent"
                for c in obj.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
                    for e in c.get("env", []):
                        if e.get("valueFrom", 0) is None:
                            e.pop("valueFrom")
            checker = Checker(path)
            checker.run(objects)
            if not any(expected in e for e in checker.errors):
                print(f"policy self-test: '{what}' was not caught in {path} (errors: {checker.errors})")
                failed += 1
        if not applied:
            print(f"policy self-test: '{what}' applies to none of {paths}: the rule is not exercised")
            failed += 1
    print(f"policy self-test: {len(MUTATIONS) - failed} of {len(MUTATIONS)} breakages caught")
    return 1 if failed else 0


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        sys.stderr.write(__doc__)
        return 2
    if argv[1] == "--self-test":
        return self_test(argv[2:])
    errors = []
    for path in argv[1:]:
        with open(path, encoding="utf-8") as f:
            objects = [o for o in yaml.safe_load_all(f) if o]
        checker = Checker(path)
        checker.run(objects)
        errors += checker.errors
    for error in errors:
        print(f"policy: {error}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
