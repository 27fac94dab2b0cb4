#!/usr/bin/env python3
"""Side-by-side summary of bench/ladder.sh results.

    bench/summarize.py RESULTS_DIR [--compare-rates 2000,8000] [--machine FILE] [--settings FILE]

Reads every RESULTS_DIR/run*/ladder.csv (one per repetition), and writes
RESULTS_DIR/summary.md and RESULTS_DIR/summary.csv: for each scenario and
system, the median over the repetitions of

  * the highest clean rate: the highest offered rate whose step and every
    lower step were clean (achieved >= 95 % of offered, no failed call, no
    UDP receive drop on the server's SIP sockets);
  * the server CPU at that rate (% of one core) and its median response time;
  * the server CPU per successful call and per request at fixed comparison
    rates (the steps offered at exactly those rates);
  * the highest achieved rate of any step (clean or not);
  * UDP receive drops over the whole ladder; memory (RSS and PSS) after the
    last step.
"""

import argparse
import csv
import glob
import os
import statistics
import sys


def num(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, digits=0, suffix=""):
    if value is None:
        return "—"
    if digits == 0:
        return f"{value:,.0f}{suffix}".replace(",", " ")
    return f"{value:,.{digits}f}{suffix}".replace(",", " ")


def fmt_ms(value):
    """sipp measures response times in whole milliseconds: 0 means under 1 ms."""
    if value is None:
        return "—"
    return "<1" if value < 1 else fmt(value, 0)


def ladder_metrics(rows, compare_rates):
    """Metrics of one ladder (the steps of one system/scenario/run)."""
    rows = sorted(rows, key=lambda r: int(r["step"]))
    clean_rate = None
    clean_row = None
    for row in rows:
        if row["clean"] != "yes":
            break
        clean_rate = num(row["offered_rate"])
        clean_row = row
    metrics = {
        "clean_rate": clean_rate,
        "cpu_pct_at_clean": num(clean_row["server_cpu_pct"]) if clean_row else None,
        "p50_at_clean": num(clean_row["rtt_p50_ms"]) if clean_row else None,
        "p99_at_clean": num(clean_row["rtt_p99_ms"]) if clean_row else None,
        "max_achieved": max((num(r["achieved_rate"]) or 0 for r in rows), default=None),
        "drops": sum(int(num(r["udp_drops"]) or 0) for r in rows),
        "failed": sum(int(num(r["failed"]) or 0) for r in rows),
        "rss_mb": num(rows[-1]["rss_mb"]) if rows else None,
        "pss_mb": num(rows[-1]["pss_mb"]) if rows else None,
        "steps": len(rows),
        "other_cpu": median([num(r.get("other_cpu_pct")) for r in rows]),
        "last_rate": num(rows[-1]["offered_rate"]) if rows else None,
    }
    for rate in compare_rates:
        at = [r for r in rows if int(num(r["offered_rate"]) or -1) == rate]
        metrics[f"us_call_{rate}"] = num(at[0]["server_cpu_us_per_call"]) if at else None
        metrics[f"us_req_{rate}"] = num(at[0]["server_cpu_us_per_request"]) if at else None
        metrics[f"clean_{rate}"] = (at[0]["clean"] == "yes") if at else None
        metrics[f"collapsed_{rate}"] = (at[0].get("collapsed") == "yes") if at else None
    return metrics


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("results")
    parser.add_argument("--compare-rates", default="2000,8000")
    parser.add_argument("--machine", help="markdown fragment describing the machine")
    parser.add_argument("--settings", help="markdown fragment: how the run was made")
    args = parser.parse_args()
    compare_rates = [int(r) for r in args.compare_rates.split(",") if r]

    runs = sorted(glob.glob(os.path.join(args.results, "run*", "ladder.csv")))
    if not runs:
        sys.exit(f"no run*/ladder.csv under {args.results}")
    # (scenario, system, transport, auth) -> [metrics per run]
    ladders = {}
    order_systems, order_scenarios = [], []
    for run in runs:
        with open(run, newline="") as f:
            rows = list(csv.DictReader(f))
        groups = {}
        for row in rows:
            key = (row["scenario"], row["system"], row["transport"], row["auth"])
            groups.setdefault(key, []).append(row)
            if row["system"] not in order_systems:
                order_systems.append(row["system"])
            if row["scenario"] not in order_scenarios:
                order_scenarios.append(row["scenario"])
        for key, group in groups.items():
            ladders.setdefault(key, []).append(ladder_metrics(group, compare_rates))

    def med(key, name):
        return median([m[name] for m in ladders[key]])

    def cmp_cell(key, name, rate):
        """CPU at a comparison rate: `*` when that step was not clean in
        every run, `collapsed` when it collapsed in most."""
        runs = ladders[key]
        if sum(1 for m in runs if m[f"collapsed_{rate}"]) * 2 > len(runs):
            return "collapsed"
        value = fmt(med(key, name), 1)
        if value != "—" and not all(m[f"clean_{rate}"] for m in runs):
            value += "*"
        return value

    lines = ["# SIP load: side by side", ""]
    if args.machine and os.path.exists(args.machine):
        lines += [open(args.machine).read().rstrip(), ""]
    if args.settings and os.path.exists(args.settings):
        lines += [open(args.settings).read().rstrip(), ""]
    repeats = len(runs)
    lines += [
        f"Each figure is the median over {repeats} run{'s' if repeats != 1 else ''} of the ladder "
        "(bench/README.md defines every column). *Clean*: achieved ≥ 95 % of offered, "
        "no failed call, no UDP receive drop on the server's SIP sockets; the highest clean "
        "rate is the highest step that was clean with every step below it clean too. "
        "CPU is the server's (every metered process), in % of one core or µs per successful "
        "call / per client request; `—`: that step was not run (the ladder stopped earlier); "
        "`*`: that step was not clean (a figure under overload); `collapsed`: not comparable. "
        "Response times are sipp's, in whole milliseconds (`<1`: under 1 ms). "
        "*Others' CPU*: what the rest of the machine used during the steps (median, % of one "
        "core; sipp and the server excluded): well above 0, the figures were disturbed.",
        "",
    ]
    cmp_head = []
    for rate in compare_rates:
        cmp_head += [f"µs/call @{rate // 1000}k" if rate % 1000 == 0 else f"µs/call @{rate}",
                     f"µs/req @{rate // 1000}k" if rate % 1000 == 0 else f"µs/req @{rate}"]
    head = (["scenario", "system", "highest clean /s", "CPU % at it", "median resp. ms at it",
             "p99 ms at it"] + cmp_head +
            ["max achieved /s", "UDP drops (ladder)", "failed calls (ladder)", "RSS MB", "PSS MB",
             "others' CPU %"])
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    csv_rows = []
    for scenario in order_scenarios:
        for system in order_systems:
            for key in sorted(k for k in ladders if k[0] == scenario and k[1] == system):
                cells = [f"{scenario} ({key[2]}{', ' + key[3] if key[3] != 'none' else ''})", system,
                         fmt(med(key, "clean_rate")), fmt(med(key, "cpu_pct_at_clean"), 1),
                         fmt_ms(med(key, "p50_at_clean")), fmt_ms(med(key, "p99_at_clean"))]
                for rate in compare_rates:
                    cells += [cmp_cell(key, f"us_call_{rate}", rate), cmp_cell(key, f"us_req_{rate}", rate)]
                cells += [fmt(med(key, "max_achieved")), fmt(med(key, "drops")), fmt(med(key, "failed")),
                          fmt(med(key, "rss_mb")), fmt(med(key, "pss_mb")), fmt(med(key, "other_cpu"), 0)]
                lines.append("| " + " | ".join(cells) + " |")
                csv_rows.append([scenario, system, key[2], key[3]] + [
                    "" if v is None else v for v in
                    [med(key, "clean_rate"), med(key, "cpu_pct_at_clean"), med(key, "p50_at_clean"),
                     med(key, "p99_at_clean")] +
                    [med(key, f"us_call_{r}") for r in compare_rates] +
                    [med(key, f"us_req_{r}") for r in compare_rates] +
                    [med(key, "max_achieved"), med(key, "drops"), med(key, "failed"),
                     med(key, "rss_mb"), med(key, "pss_mb"), med(key, "other_cpu")]])
    disturbed = os.path.join(args.results, "disturbed.txt")
    if os.path.exists(disturbed):
        lines += ["", "Started on a busy machine (after waiting the longest allowed):", ""]
        lines += [f"* {l.strip()}" for l in open(disturbed) if l.strip()]
    lines += ["", "Per-step figures: `run*/ladder.csv` (one line per step); sipp's final screen and "
              "statistics of each step: `run*/raw/`.", ""]
    with open(os.path.join(args.results, "summary.md"), "w") as f:
        f.write("\n".join(lines))
    with open(os.path.join(args.results, "summary.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["scenario", "system", "transport", "auth", "highest_clean_rate",
                         "cpu_pct_at_clean", "rtt_p50_ms_at_clean", "rtt_p99_ms_at_clean"] +
                        [f"us_per_call_at_{r}" for r in compare_rates] +
                        [f"us_per_request_at_{r}" for r in compare_rates] +
                        ["max_achieved_rate", "udp_drops", "failed_calls", "rss_mb", "pss_mb",
                         "other_cpu_pct"])
        writer.writerows(csv_rows)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
