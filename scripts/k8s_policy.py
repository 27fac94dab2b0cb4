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
  definitions (clap `env = "..."`) declare, or one read with
  std::env::var; a wrong name would be ignored or, for a required one,
  crash-loop the pod. `$(VAR)` references resolve to a variable defined
  earlier in the list (Kubernetes leaves them unexpanded otherwise).
- Locked down by default: the presence and registrar APIs have a token
  provider, every edge has a service token source, and there is a
  default-deny NetworkPolicy.
"""

import base64
import os
import re
import sys

import yaml

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}

# Where each binary's flags are defined: its own main and the argument
# structs it flattens.
# A path with "#Name" is only the struct Name in that file.
BINARY_SOURCES = {
    "edge": ["services/edge/src", "crates/grpc-auth/src/args.rs#ServiceTokenArgs"],
    "presence": ["services/presence/src/main.rs", "crates/grpc-auth/src/args.rs#ApiAuthArgs"],
    "registrar": ["services/registrar/src/main.rs", "crates/grpc-auth/src/args.rs#ApiAuthArgs"],
}
# Read by every binary outside clap (crates/runtime, crates/telemetry).
COMMON_SOURCES = ["crates/runtime/src", "crates/telemetry/src"]
# Read by tracing-subscriber's EnvFilter, not by name in this code.
IMPLICIT = {"RUST_LOG"}

SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|PRIVATE|CREDENTIAL|TOKEN|API_KEY", re.I)
NOT_SECRET_SUFFIX = re.compile(r"_(URL|FILE|ID|SCOPE|AUDIENCE|METHOD)$", re.I)
URL_WITH_PASSWORD = re.compile(r"://[^/@\s]*:([^/@\s]+)@")
VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
PLACEHOLDER = "CHANGE-ME"


def looks_secret(name):
    return bool(SECRET_NAME.search(name)) and not NOT_SECRET_SUFFIX.search(name)


def declared_env(paths):
    names = set()
    for rel in paths:
        rel, _, struct = rel.partition("#")
        path = os.path.join(ROOT, rel)
        files = []
        if os.path.isdir(path):
            for dirpath, _, filenames in os.walk(path):
                files += [os.path.join(dirpath, f) for f in filenames if f.endswith(".rs")]
        elif os.path.isfile(path):
            files.append(path)
        for file in files:
            with open(file, encoding="utf-8") as f:
                text = f.read()
            if struct:
                match = re.search(r"pub struct " + struct + r" \{.*?\n\}", text, re.S)
                if not match:
                    raise SystemExit(f"policy: struct {struct} not found in {rel}")
                text = match.group(0)
            names.update(re.findall(r'\benv\s*=\s*"([A-Z0-9_]+)"', text))
            names.update(re.findall(r'env::var(?:_os)?\(\s*"([A-Z0-9_]+)"', text))
    return names


class Checker:
    def __init__(self, source):
        self.source = source
        self.errors = []
        self.env_by_binary = {
            binary: declared_env(paths + COMMON_SOURCES) | IMPLICIT
            for binary, paths in BINARY_SOURCES.items()
        }

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
        binary = os.path.basename((c.get("command") or [""])[0])
        if binary in self.env_by_binary:
            known = self.env_by_binary[binary]
            for var in sorted(defined):
                if var not in known and var not in referenced:
                    self.fail(obj, f"container {name}: {binary} reads no variable {var} (a typo, or a flag that does not exist)")
            self.authentication(obj, name, binary, defined)
        elif c.get("image", "").split("/")[-1].startswith("presence:"):
            self.fail(obj, f"container {name}: runs the presence image with a command this check does not know: {c.get('command')}")

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
]


def self_test(path):
    """Breaks a good rendering in each way of MUTATIONS and fails unless
    the checker reports exactly that."""
    import copy

    with open(path, encoding="utf-8") as f:
        good = [o for o in yaml.safe_load_all(f) if o]
    checker = Checker(path)
    checker.run(copy.deepcopy(good))
    if checker.errors:
        print(f"policy self-test: {path} is not clean to start with: {checker.errors}")
        return 1
    failed = 0
    for what, mutate, expected in MUTATIONS:
        objects = copy.deepcopy(good)
        mutate(objects)
        for obj in objects:  # a None left by a mutation means "absent"
            for c in obj.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
                for e in c.get("env", []):
                    if e.get("valueFrom", 0) is None:
                        e.pop("valueFrom")
        checker = Checker(path)
        checker.run(objects)
        if not any(expected in e for e in checker.errors):
            print(f"policy self-test: '{what}' was not caught (errors: {checker.errors})")
            failed += 1
    print(f"policy self-test: {len(MUTATIONS) - failed} of {len(MUTATIONS)} breakages caught")
    return 1 if failed else 0


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        sys.stderr.write(__doc__)
        return 2
    if argv[1] == "--self-test":
        return self_test(argv[2])
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
