#!/usr/bin/env python3
"""Renders a Kustomize directory the way `kustomize build` does, for the
features k8s/ uses and no others.

    python3 scripts/k8s_render.py k8s/overlays/dev > dev.yaml
    python3 scripts/k8s_render.py --compare a.yaml b.yaml   # same objects?
    python3 scripts/k8s_render.py --self-test

Why it exists: `kubectl kustomize` is not on every machine and not in
Debian in a usable version (Debian's kubectl 1.20 embeds kustomize 2, which
knows neither `patches` nor the kustomization of today), while CI must
render every overlay. scripts/check-k8s.sh renders with this and, where a
`kubectl` with kustomize 5 exists, renders again with it and fails on any
difference, so the two cannot drift apart unnoticed.

Supported: `resources` (files and directories with a kustomization),
`namespace` (which also renames a Namespace object), `images` (newName, newTag, digest) and `patches` (a file or an
inline patch; strategic merge, matched by kind and name). Anything else in
a kustomization is an error rather than being silently ignored.

Strategic merge follows kustomize: maps merge, a null value removes a key,
lists of containers, env entries, volumes, volume mounts, ports and a few
more merge by their key with the patch's entries first (in the patch's
order) and the other entries after them, in their own order; every other
list is replaced.
"""

import copy
import os
import sys

import yaml

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED_FIELDS = {"apiVersion", "kind", "namespace", "resources", "images", "patches"}

# Kinds without a namespace: `namespace:` leaves them alone.
CLUSTER_SCOPED = {
    "APIService",
    "CSIDriver",
    "CSINode",
    "CertificateSigningRequest",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "IngressClass",
    "MutatingWebhookConfiguration",
    "Namespace",
    "Node",
    "PersistentVolume",
    "PriorityClass",
    "RuntimeClass",
    "StorageClass",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "ValidatingWebhookConfiguration",
    "VolumeAttachment",
}

# kustomize's default ("legacy") output order: these kinds first, in this
# order, then every other kind by name, then the webhooks last.
ORDER_FIRST = [
    "Namespace",
    "ResourceQuota",
    "StorageClass",
    "CustomResourceDefinition",
    "ServiceAccount",
    "PodSecurityPolicy",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Endpoints",
    "Service",
    "LimitRange",
    "PriorityClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
]
ORDER_LAST = ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"]

# Strategic-merge keys of the lists the patches may touch.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
}


class RenderError(Exception):
    pass


def load_documents(path):
    with open(path, encoding="utf-8") as f:
        try:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
        except yaml.YAMLError as e:
            raise RenderError(f"{path}: {e}") from e
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc or "metadata" not in doc:
            raise RenderError(f"{path}: a document without kind or metadata")
    return docs


def kustomization_path(directory):
    for name in KUSTOMIZATION_FILES:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    raise RenderError(f"{directory}: no kustomization.yaml")


def resource_id(obj):
    meta = obj.get("metadata", {})
    return (obj["kind"], meta.get("namespace", ""), meta.get("name", ""))


def render(directory):
    """The objects `kustomize build directory` produces, in its order."""
    path = kustomization_path(directory)
    with open(path, encoding="utf-8") as f:
        kustomization = yaml.safe_load(f) or {}
    unknown = set(kustomization) - SUPPORTED_FIELDS
    if unknown:
        raise RenderError(f"{path}: unsupported fields {sorted(unknown)} (see {__file__})")

    objects = []
    for entry in kustomization.get("resources", []):
        target = os.path.normpath(os.path.join(directory, entry))
        if os.path.isdir(target):
            objects.extend(render(target))
        elif os.path.isfile(target):
            objects.extend(load_documents(target))
        else:
            raise RenderError(f"{path}: resource {entry} does not exist")

    for patch in kustomization.get("patches", []):
        apply_patch(objects, patch, directory, path)

    images = kustomization.get("images", [])
    if images:
        for obj in objects:
            set_images(obj, images)

    namespace = kustomization.get("namespace")
    if namespace:
        for obj in objects:
            if obj["kind"] == "Namespace":
                # kustomize renames a Namespace object to the namespace it
                # puts everything in.
                obj["metadata"]["name"] = namespace
            elif obj["kind"] not in CLUSTER_SCOPED:
                obj.setdefault("metadata", {})["namespace"] = namespace

    seen = set()
    for obj in objects:
        rid = resource_id(obj)
        if rid in seen:
            raise RenderError(f"{path}: {rid} is defined twice")
        seen.add(rid)
    return sort_objects(objects)


def apply_patch(objects, patch, directory, path):
    if set(patch) - {"path", "patch"}:
        raise RenderError(f"{path}: patch fields {sorted(set(patch) - {'path', 'patch'})} are not supported")
    if "path" in patch:
        docs = load_documents(os.path.join(directory, patch["path"]))
    elif "patch" in patch:
        docs = [d for d in yaml.safe_load_all(patch["patch"]) if d is not None]
    else:
        raise RenderError(f"{path}: a patch needs path or patch")
    for doc in docs:
        if isinstance(doc, list):
            raise RenderError(f"{path}: JSON 6902 patches are not supported")
        meta = doc.get("metadata", {})
        matches = [
            obj
            for obj in objects
            if obj["kind"] == doc.get("kind")
            and obj["metadata"].get("name") == meta.get("name")
            and ("namespace" not in meta or obj["metadata"].get("namespace") == meta["namespace"])
        ]
        if len(matches) != 1:
            raise RenderError(
                f"{path}: patch of {doc.get('kind')}/{meta.get('name')} matches {len(matches)} objects"
            )
        merged = strategic_merge(matches[0], doc, None)
        matches[0].clear()
        matches[0].update(merged)


def strategic_merge(original, patch, field):
    if isinstance(patch, dict) and isinstance(original, dict):
        if any(k.startswith("$") for k in patch):
            raise RenderError(f"patch directives ({list(patch)}) are not supported")
        result = dict(original)
        for key, value in patch.items():
            if value is None:
                result.pop(key, None)
            elif key in result:
                result[key] = strategic_merge(result[key], value, key)
            else:
                result[key] = without_nulls(value)
        return result
    if isinstance(patch, list) and isinstance(original, list):
        key = merge_key(field, original + patch)
        if key is None:
            return without_nulls(patch)
        by_key = {item.get(key): item for item in original}
        patched = []
        for item in patch:
            if item.get(key) in by_key:
                patched.append(strategic_merge(by_key[item.get(key)], item, None))
            else:
                patched.append(without_nulls(item))
        patch_keys = {item.get(key) for item in patch}
        return patched + [copy.deepcopy(o) for o in original if o.get(key) not in patch_keys]
    return without_nulls(patch)


def merge_key(field, items):
    if not items or not all(isinstance(i, dict) for i in items):
        return None
    if field == "ports":
        # Container ports merge by containerPort, a Service's by port.
        return "containerPort" if all("containerPort" in i for i in items) else "port"
    return MERGE_KEYS.get(field)


def without_nulls(value):
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def set_images(node, images):
    """Rewrites `image` of every container and init container below node."""
    if isinstance(node, dict):
        for field in ("containers", "initContainers"):
            for container in node.get(field, []) or []:
                if isinstance(container, dict) and isinstance(container.get("image"), str):
                    container["image"] = new_image(container["image"], images)
        for value in node.values():
            set_images(value, images)
    elif isinstance(node, list):
        for value in node:
            set_images(value, images)


def split_image(image):
    name, digest = (image.split("@", 1) + [None])[:2]
    tag = None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
    return name, tag, digest


def new_image(image, images):
    name, tag, digest = split_image(image)
    for rule in images:
        if rule.get("name") != name:
            continue
        name = rule.get("newName", name)
        if "digest" in rule:
            return f"{name}@{rule['digest']}"
        if "newTag" in rule:
            tag, digest = str(rule["newTag"]), None
        break
    if digest:
        return f"{name}@{digest}"
    return f"{name}:{tag}" if tag else name


def sort_objects(objects):
    def rank(obj):
        kind = obj["kind"]
        if kind in ORDER_FIRST:
            group = (0, ORDER_FIRST.index(kind), "")
        elif kind in ORDER_LAST:
            group = (2, ORDER_LAST.index(kind), "")
        else:
            group = (1, 0, kind)
        meta = obj.get("metadata", {})
        return group + (meta.get("namespace", ""), meta.get("name", ""))

    return sorted(objects, key=rank)


SELF_TEST_FILES = {
    "base/kustomization.yaml": """
namespace: one
resources: [app.yaml, ns.yaml]
""",
    "base/ns.yaml": """
apiVersion: v1
kind: Namespace
metadata: {name: one}
""",
    "base/app.yaml": """
apiVersion: apps/v1
kind: Deployment
metadata: {name: app}
spec:
  template:
    spec:
      containers:
        - name: main
          image: app
          args: [a, b]
          env: [{name: A, value: "1"}, {name: B, value: "2"}, {name: C, value: "3"}]
          volumeMounts: [{name: v, mountPath: /v}]
        - {name: side, image: "registry.local:5000/side:1.0"}
---
apiVersion: v1
kind: Service
metadata: {name: app}
spec:
  ports: [{name: a, port: 1}, {name: b, port: 2}]
""",
    "overlay/kustomization.yaml": """
namespace: two
resources: [../base]
images:
  - {name: app, newName: reg.example/app, newTag: "7"}
  - {name: "registry.local:5000/side", digest: "sha256:00"}
patches:
  - path: patch.yaml
  - patch: |
      apiVersion: v1
      kind: Service
      metadata: {name: app}
      spec:
        ports: [{name: bb, port: 2}]
""",
    "overlay/patch.yaml": """
apiVersion: apps/v1
kind: Deployment
metadata: {name: app}
spec:
  replicas: 3
  template:
    spec:
      containers:
        - name: extra
          image: other:1
        - name: main
          args: [z]
          env: [{name: X, value: "9"}, {name: C, value: "33"}, {name: B, value: null}]
          volumeMounts: [{name: w, mountPath: /w}]
""",
}

# What `kustomize build overlay` gives for SELF_TEST_FILES (kustomize 5.5).
SELF_TEST_EXPECTED = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "two"}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "app", "namespace": "two"},
     "spec": {"ports": [{"name": "bb", "port": 2}, {"name": "a", "port": 1}]}},
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "app", "namespace": "two"},
     "spec": {"replicas": 3, "template": {"spec": {"containers": [
         {"name": "extra", "image": "other:1"},
         {"name": "main", "image": "reg.example/app:7", "args": ["z"],
          "env": [{"name": "X", "value": "9"}, {"name": "C", "value": "33"}, {"name": "B"},
                  {"name": "A", "value": "1"}],
          "volumeMounts": [{"name": "w", "mountPath": "/w"}, {"name": "v", "mountPath": "/v"}]},
         {"name": "side", "image": "registry.local:5000/side@sha256:00"}]}}}},
]


def self_test():
    """Renders SELF_TEST_FILES and compares with kustomize's output."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for rel, text in SELF_TEST_FILES.items():
            os.makedirs(os.path.dirname(os.path.join(tmp, rel)), exist_ok=True)
            with open(os.path.join(tmp, rel), "w", encoding="utf-8") as f:
                f.write(text)
        got = render(os.path.join(tmp, "overlay"))
        if got != SELF_TEST_EXPECTED:
            sys.stderr.write("render self-test: got\n" + yaml.safe_dump_all(got))
            return 1
        with open(os.path.join(tmp, "overlay/kustomization.yaml"), "a", encoding="utf-8") as f:
            f.write("commonLabels: {a: b}\n")
        try:
            render(os.path.join(tmp, "overlay"))
            sys.stderr.write("render self-test: an unsupported field was accepted\n")
            return 1
        except RenderError:
            pass
    print("render self-test: passed")
    return 0


def compare(path_a, path_b):
    """Whether two renderings hold the same objects (order of map keys and
    YAML style aside); prints what differs."""

    def load(path):
        with open(path, encoding="utf-8") as f:
            return {resource_id(o): o for o in yaml.safe_load_all(f) if o}

    a, b = load(path_a), load(path_b)
    same = True
    for rid in sorted(set(a) | set(b)):
        if rid not in a or rid not in b:
            print(f"{'/'.join(rid)}: only in {path_a if rid in a else path_b}")
            same = False
        elif a[rid] != b[rid]:
            print(f"{'/'.join(rid)}: differs between {path_a} and {path_b}")
            same = False
    return 0 if same else 1


def main(argv):
    if len(argv) == 2 and argv[1] == "--self-test":
        return self_test()
    if len(argv) == 4 and argv[1] == "--compare":
        return compare(argv[2], argv[3])
    if len(argv) != 2 or argv[1] in ("-h", "--help"):
        sys.stderr.write(__doc__)
        return 2
    try:
        objects = render(os.path.normpath(argv[1]))
    except (RenderError, OSError) as e:
        sys.stderr.write(f"error: {e}\n")
        return 1
    yaml.safe_dump_all(objects, sys.stdout, default_flow_style=False, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
