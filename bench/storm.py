"""Connection storm (issue 19 item 2): 20,000 clients upgrading within 10 s (from several
processes and 127.0.x.y source addresses, each attempt with a deadline) against
`uws-py serve --workers 2` with connection limits, while 100 established clients keep a
PING/PONG request/reply stream. Prints and writes (bench/results/storm-<stamp>.json and .md)
the established clients' p50/p99 before/during/after the storm, the established connections
dropped (must be 0), and the storm attempts' outcomes (101 / 503 / 429 / timeout / socket
errors) with whether every refusal said Retry-After. Exits 1 when an established connection
dropped, a refusal had no Retry-After, or an attempt had no outcome.

usage: python bench/storm.py [--clients 20000] [--storm-seconds 10] [--processes 4]
           [--sources-per-process 4] [--established 100] [--workers 2] [--max-connections 6000]
           [--max-connections-per-ip 300] [--max-upgrades-per-second 0] [--retry-after 5] [--backlog 4096]
           [--attempt-deadline 10] [--label TEXT] [--no-write]

Run from the repository root with the package importable (PYTHONPATH=python when the native
module was copied there, or an installed uws-py). What the fields mean: bench/storm/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.storm import StormConfig, run_storm  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def markdown(report: dict, label: str) -> str:
    """The run as a Markdown section: configuration, phases, outcomes."""
    c, e, s = report["config"], report["established"], report["storm"]
    lines = [f"# Connection storm {report['stamp']}" + (f" ({label})" if label else ""), "",
             f"`{report['command']}`", "",
             f"{s['attempts']} attempts over {c['storm_seconds']} s from {c['processes']} processes x "
             f"{c['sources_per_process']} source addresses (launched in {s['launch_s']} s, all resolved "
             f"{s['resolve_s']} s after the first); hub `--workers {c['workers']} --max-connections "
             f"{c['max_connections']} --max-connections-per-ip {c['max_connections_per_ip']} "
             f"--max-upgrades-per-second {c['max_upgrades_per_second']} --backlog {c['backlog']}`; {e['clients']} established "
             f"clients, PING/PONG with {c['think'] * 1000:.0f} ms between a reply and the next PING.", "",
             "| phase | round trips | p50 ms | p99 ms | max ms |", "|---|---|---|---|---|"]
    for phase in ("before", "during", "after"):
        p = e["phases"][phase]
        lines.append(f"| {phase} | {p['round_trips']} | {p['p50_ms']} | {p['p99_ms']} | {p['max_ms']} |")
    lines += ["", f"Established connections dropped: **{e['dropped']}**; PINGs unanswered within 5 s: "
              f"{e['reply_timeouts']}; errors: {e['errors']}.", "",
              "| storm outcome | count | p50 ms | p99 ms | max ms |", "|---|---|---|---|---|"]
    for outcome, count in s["outcomes"].items():
        t = s["connect_ms"][outcome]
        lines.append(f"| {outcome} | {count} | {t['p50']} | {t['p99']} | {t['max']} |")
    lines += ["", f"Refusals without Retry-After: {sum(s['refused_without_retry_after'].values())}; "
              f"Retry-After seen: {s['retry_after_s']} s; upgraded connections held: {s['held']}, "
              f"dropped while held: {s['dropped_after_101']}.", "",
              "Workers at the storm's end: " + ", ".join(
                  f"pid {pid}: {w.get('fds')} fds, {w.get('rss_mib')} MiB, {w.get('cpu_s_storm')} s CPU during the storm"
                  for pid, w in report["workers_at_storm_end"].items() if pid != "load_average")
              + f"; {report['workers_cpu_us_per_attempt']} us of worker CPU per attempt; load average "
              f"{', '.join(f'{x:.1f}' for x in report['workers_at_storm_end']['load_average'])}.", ""]
    return "\n".join(lines)


def failures(report: dict) -> list:
    """What makes the run fail: drops, refusals without Retry-After, attempts without an outcome."""
    e, s = report["established"], report["storm"]
    problems = []
    if e["dropped"]:
        problems.append(f"{e['dropped']} established connection(s) dropped")
    if s["refused_without_retry_after"]:
        problems.append(f"refusals without Retry-After: {s['refused_without_retry_after']}")
    if s["resolved"] != s["attempts"]:
        problems.append(f"{s['attempts'] - s['resolved']} attempt(s) without an outcome")
    if s["dropped_after_101"]:
        problems.append(f"{s['dropped_after_101']} upgraded storm connection(s) dropped while held")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = StormConfig()
    for f in dataclasses.fields(StormConfig):
        if f.name == "extra_serve_args":
            continue
        parser.add_argument("--" + f.name.replace("_", "-"), type=type(getattr(defaults, f.name)),
                            default=getattr(defaults, f.name))
    parser.add_argument("--label", default="", help="a note for the result file")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    config = StormConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(StormConfig)
                            if f.name != "extra_serve_args"})
    report = run_storm(config)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    report["stamp"] = stamp
    report["label"] = args.label
    report["command"] = "python bench/storm.py " + " ".join(sys.argv[1:])
    report["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()}
    report["failures"] = failures(report)
    text = markdown(report, args.label)
    print(text)
    if report["failures"]:
        print("FAILED: " + "; ".join(report["failures"]))
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"storm-{stamp}.json").write_text(json.dumps(report, indent=1) + "\n")
        (RESULTS / f"storm-{stamp}.md").write_text(text)
        print(f"wrote bench/results/storm-{stamp}.json and .md")
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
