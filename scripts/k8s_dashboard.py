#!/usr/bin/env python3
"""Checks the Grafana dashboard in k8s/grafana against the metrics the
processes really serve. Run by scripts/check-k8s.sh:

    python3 scripts/k8s_dashboard.py [--self-test] k8s/grafana/*.json

What is checked, and why:
- It is a dashboard Grafana imports and provisions alike: JSON, a
  schemaVersion, a uid, one Prometheus datasource variable DS_PROMETHEUS
  that every panel and query uses (`${DS_PROMETHEUS}`), unique panel ids,
  panels inside the 24-column grid.
- Every series a query names is one of METRICS below (the families as
  scraped from --metrics-listen, with `_total` on counters and
  `_bucket`/`_sum`/`_count` on histograms), every label it selects or
  groups by is one of that family's (or `le` of a histogram's buckets, or
  the `instance`/`job` Prometheus adds), and every `{{label}}` of a legend
  survives the query's aggregation. A query on a misspelt metric or label
  draws an empty panel and says nothing.
- METRICS matches the code: each family's name appears as a string in the
  Rust sources, so renaming a metric without the dashboard fails here; and
  the dashboard shows every family.
- With `promtool` installed (Debian package prometheus), every query also
  parses as PromQL.

--self-test breaks the dashboard in each way above and fails unless each
is caught.
"""

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

# Family (as registered in the code) -> (type, labels). Counters are
# scraped as NAME_total, histograms as NAME_bucket / _sum / _count.
METRICS = {
    # edge
    "sip_requests": ("counter", {"method"}),
    "sip_responses": ("counter", {"method", "code"}),
    "sip_request_duration_seconds": ("histogram", {"method"}),
    "sip_request_retransmissions": ("counter", set()),
    "sip_transactions_overloaded": ("counter", set()),
    "sip_auth": ("counter", {"scheme", "outcome"}),
    "sip_notifies": ("counter", {"result"}),
    "sip_notifies_coalesced": ("counter", set()),
    "presence_change_to_notify_seconds": ("histogram", set()),
    "sip_dialogs_taken_over": ("counter", set()),
    "presence_fanout_dialogs": ("histogram", set()),
    "grpc_client_duration_seconds": ("histogram", {"rpc", "code"}),
    "sip_dialogs": ("gauge", set()),
    "sip_server_transactions": ("gauge", set()),
    "sip_server_transactions_in_progress": ("gauge", set()),
    "udp_receive_drops": ("counter", set()),
    "sip_transport_refusals": ("counter", {"event"}),
    "sip_requests_limited": ("counter", {"limit"}),
    "presence_limit_refusals": ("counter", {"limit"}),
    # presence, registrar, presence-node
    "grpc_server_duration_seconds": ("histogram", {"method", "code"}),
    "expiry_oldest_due_age_seconds": ("gauge", {"kind"}),
    "expiry_removed": ("counter", {"kind"}),
    "expiry_failed": ("counter", {"kind"}),
    "expiry_passes": ("counter", {"kind"}),
    "scheduled_items": ("gauge", {"kind"}),
    # every process using Redis
    "redis_round_trip_duration_seconds": ("histogram", {"outcome"}),
    "redis_feed_reconnects": ("counter", set()),
}
# Added by Prometheus to every scraped series.
TARGET_LABELS = {"instance", "job"}
SOURCE_DIRS = ["crates", "services"]

PROMQL_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
    "and", "or", "unless", "offset", "inf", "nan",
}
PROMQL_FUNCTIONS = {
    "sum", "avg", "min", "max", "count", "topk", "bottomk", "quantile", "stddev", "stdvar",
    "rate", "irate", "increase", "delta", "idelta", "deriv", "histogram_quantile",
    "clamp_min", "clamp_max", "abs", "ceil", "floor", "round", "label_replace",
    "sum_over_time", "avg_over_time", "max_over_time", "min_over_time", "vector", "scalar",
    "time", "absent", "changes", "resets",
}


def scraped_names():
    """Series name -> family."""
    names = {}
    for family, (kind, _) in METRICS.items():
        if kind == "counter":
            names[family + "_total"] = family
        elif kind == "histogram":
            for suffix in ("_bucket", "_sum", "_count"):
                names[family + suffix] = family
        else:
            names[family] = family
    return names


def strip_strings(expr):
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


def check_expr(expr, legend, where, errors):
    """The metrics, labels and legend of one query; returns the families
    it uses."""
    names = scraped_names()
    used = set()
    text = re.sub(r"\$\{?\w+\}?", "", strip_strings(expr))  # Grafana variables ($__rate_interval)
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    # Selectors: metric{matchers}, each label checked against that metric.
    for match in re.finditer(r"([A-Za-z_:][\w:]*)?\s*\{([^}]*)\}", text):
        metric, matchers = match.group(1), match.group(2)
        labels = set(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", matchers))
        if metric in names:
            allowed = METRICS[names[metric]][1] | TARGET_LABELS | ({"le"} if metric.endswith("_bucket") else set())
            for label in sorted(labels - allowed):
                errors.append(f"{where}: {metric} has no label {label}")
    text_no_matchers = re.sub(r"\{[^}]*\}", "", text)
    grouped = []
    for match in re.finditer(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", text_no_matchers):
        grouped.append((match.group(1), {l.strip() for l in match.group(2).split(",") if l.strip()}))
    bare = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text_no_matchers)
    available = set(TARGET_LABELS)
    for match in re.finditer(r"([A-Za-z_:][\w:]*)\s*(\()?", bare):
        word, call = match.group(1), match.group(2)
        if call:
            if word not in PROMQL_FUNCTIONS and word not in PROMQL_KEYWORDS:
                errors.append(f"{where}: unknown function {word}")
            continue
        if word.lower() in PROMQL_KEYWORDS or re.fullmatch(r"\d\w*", word):
            continue
        if word not in names:
            errors.append(f"{where}: no process serves a metric {word}")
            continue
        used.add(names[word])
        available |= METRICS[names[word]][1] | ({"le"} if word.endswith("_bucket") else set())
    for _, labels in grouped:
        for label in sorted(labels - available):
            errors.append(f"{where}: groups by {label}, which none of its metrics has")
    # The legend can only name labels the outermost aggregation keeps.
    by_clauses = [labels for kind, labels in grouped if kind == "by"]
    kept = (by_clauses[-1] if by_clauses and re.match(r"\s*(sum|max|min|avg|count|histogram_quantile)\b", text) else available)
    for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", legend or ""):
        if label not in kept:
            errors.append(f"{where}: legend names {label}, which the query does not keep")
    return used


def check_dashboard(path, dashboard):
    errors = []
    used = set()
    if not isinstance(dashboard, dict):
        return [f"{path}: not a JSON object"], used
    if not isinstance(dashboard.get("schemaVersion"), int) or dashboard["schemaVersion"] < 36:
        errors.append(f"{path}: schemaVersion missing or older than 36")
    if not dashboard.get("uid") or not dashboard.get("title"):
        errors.append(f"{path}: no uid or title")
    variables = dashboard.get("templating", {}).get("list", [])
    if not any(v.get("name") == "DS_PROMETHEUS" and v.get("type") == "datasource" and v.get("query") == "prometheus"
               for v in variables):
        errors.append(f"{path}: no Prometheus datasource variable DS_PROMETHEUS")
    ids = set()
    queries = 0
    for panel in dashboard.get("panels", []):
        where = f"{path}: panel {panel.get('id')} '{panel.get('title')}'"
        if panel.get("id") in ids:
            errors.append(f"{where}: id used twice")
        ids.add(panel.get("id"))
        pos = panel.get("gridPos", {})
        if not all(isinstance(pos.get(k), int) for k in "hwxy") or pos["x"] + pos["w"] > 24:
            errors.append(f"{where}: gridPos outside the 24-column grid")
        if panel.get("type") == "row":
            continue
        if panel.get("datasource", {}).get("uid") != "${DS_PROMETHEUS}":
            errors.append(f"{where}: datasource is not ${{DS_PROMETHEUS}}")
        targets = panel.get("targets", [])
        if not targets:
            errors.append(f"{where}: no query")
        for target in targets:
            if target.get("datasource", {}).get("uid") != "${DS_PROMETHEUS}":
                errors.append(f"{where}: query {target.get('refId')}: datasource is not ${{DS_PROMETHEUS}}")
            expr = target.get("expr", "")
            if not expr.strip():
                errors.append(f"{where}: query {target.get('refId')} is empty")
                continue
            queries += 1
            used |= check_expr(expr, target.get("legendFormat"), f"{where} query {target.get('refId')}", errors)
    for family in sorted(set(METRICS) - used):
        errors.append(f"{path}: no panel shows {family}")
    return errors, used


def check_sources():
    """Each family of METRICS is named in the Rust sources (outside tests)."""
    text = []
    for directory in SOURCE_DIRS:
        for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, directory)):
            dirnames[:] = [d for d in dirnames if d not in ("tests", "target")]
            for name in filenames:
                if name.endswith(".rs"):
                    with open(os.path.join(dirpath, name), encoding="utf-8") as f:
                        text.append(f.read())
    text = "\n".join(text)
    return [f"METRICS: no Rust source registers a metric \"{family}\" (renamed?)"
            for family in sorted(METRICS) if f'"{family}"' not in text]


def promtool_check(dashboards):
    """Every query parses as PromQL (when promtool is installed)."""
    promtool = shutil.which("promtool")
    if not promtool:
        print("k8s_dashboard: no promtool here (Debian package prometheus): PromQL syntax not checked")
        return []
    rules = []
    for path, dashboard in dashboards:
        for panel in dashboard.get("panels", []):
            for target in panel.get("targets", []):
                expr = re.sub(r"\$__rate_interval|\$__interval|\$__range", "5m", target.get("expr", ""))
                if expr.strip():
                    rules.append({"record": f"panel_{panel.get('id')}_{target.get('refId')}", "expr": expr})
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        # promtool reads YAML, of which JSON is a part.
        json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
        name = f.name
    try:
        result = subprocess.run([promtool, "check", "rules", name], capture_output=True, text=True)
    finally:
        os.unlink(name)
    if result.returncode != 0:
        return [f"promtool: {line}" for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    print(f"k8s_dashboard: promtool parses all {len(rules)} queries")
    return []


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def first_query(dashboard):
    return next(t for p in dashboard["panels"] for t in p.get("targets", []))


def query_of(dashboard, metric):
    return next(t for p in dashboard["panels"] for t in p.get("targets", []) if metric in t["expr"])


# Breakages that must be caught: (what, how, words of the error).
MUTATIONS = [
    ("misspelt metric", lambda d: first_query(d).update(expr="sum(rate(sip_request_total[5m]))"),
     "no process serves a metric sip_request_total"),
    ("counter without _total", lambda d: query_of(d, "sip_notifies_total").update(
        expr=query_of(d, "sip_notifies_total")["expr"].replace("sip_notifies_total", "sip_notifies")),
     "no process serves a metric sip_notifies"),
    ("label the metric lacks", lambda d: query_of(d, "sip_responses_total").update(
        expr='sum(rate(sip_responses_total{status=~"5.."}[5m]))'), "has no label status"),
    ("grouping by a missing label", lambda d: query_of(d, "sip_auth_total").update(
        expr="sum by (reason) (rate(sip_auth_total[5m]))"), "groups by reason"),
    ("legend of a dropped label", lambda d: query_of(d, "sip_notifies_total").update(legendFormat="{{method}}"),
     "legend names method"),
    ("fixed datasource", lambda d: next(p for p in d["panels"] if p["type"] != "row").update(
        datasource={"type": "prometheus", "uid": "abc123"}), "datasource is not"),
    ("family not shown", lambda d: d.update(panels=[p for p in d["panels"] if "udp_receive_drops" not in json.dumps(p)]),
     "no panel shows udp_receive_drops"),
    ("no datasource variable", lambda d: d["templating"].update(list=[]), "no Prometheus datasource variable"),
]


def self_test(paths):
    failed = 0
    for path in paths:
        good = load(path)
        errors, _ = check_dashboard(path, good)
        if errors:
            print(f"dashboard self-test: {path} is not clean to start with: {errors}")
            return 1
        for what, mutate, expected in MUTATIONS:
            broken = copy.deepcopy(good)
            mutate(broken)
            errors, _ = check_dashboard(path, broken)
            if not any(expected in e for e in errors):
                print(f"dashboard self-test: '{what}' was not caught (errors: {errors})")
                failed += 1
    print(f"dashboard self-test: {len(MUTATIONS) * len(paths) - failed} of {len(MUTATIONS) * len(paths)} breakages caught")
    return 1 if failed else 0


def main(argv):
    args = argv[1:]
    if not args or args[0] in ("-h", "--help"):
        sys.stderr.write(__doc__)
        return 2
    if args[0] == "--self-test":
        return self_test(args[1:])
    errors = check_sources()
    dashboards = []
    for path in args:
        try:
            dashboard = load(path)
        except (OSError, ValueError) as e:
            errors.append(f"{path}: {e}")
            continue
        found, _ = check_dashboard(path, dashboard)
        errors += found
        dashboards.append((path, dashboard))
    if not errors:
        errors += promtool_check(dashboards)
    for error in errors:
        print(f"dashboard: {error}")
    if not errors:
        panels = sum(len([p for p in d.get("panels", []) if p.get("type") != "row"]) for _, d in dashboards)
        print(f"k8s_dashboard: {len(dashboards)} dashboard(s), {panels} panels, every metric and label known")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
