"""Chaos during traffic (issue 19 item 3) with parameters: acknowledged publishes and SDK
subscribers on a history topic against `uws-py serve --workers 2 --broker redis://...`
(redis-server with an AOF) while one fault happens; prints published / delivered / recovered /
lost / duplicated and the recovery times, writes bench/chaos/results/<fault>.json, and exits 1
when a subscriber missed or repeated a message. The quick versions are
tests/integration/chaos/; what each fault does and what "lost" means is in
tests/support/chaos.py and bench/chaos/README.md.

usage: python bench/chaos/run.py FAULT [FAULT ...] [--duration 60] [--messages 12000]
           [--subscribers 6] [--workers 2] [--publishers 2] [--delay SECONDS] [--outage 3]
           [--seed 19] [--no-write] [--table]
FAULT: kill-worker, rolling-restart, redis-restart, redis-pause, redis-sleep, network-cuts, all

Run from the repository root with the package importable (PYTHONPATH=python when the native
module was copied there, or an installed uws-py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.chaos import FAULTS, chaos_config, run_chaos  # noqa: E402
from tests.support.zero_loss import cluster_processes, describe  # noqa: E402

RESULTS = ROOT / "bench" / "chaos" / "results"
COLUMNS = ("fault", "published", "refused", "unanswered", "stored_twice", "subscribers", "delivered", "recovered",
           "disconnects", "lost", "duplicated", "fault_s", "longest_ack_gap_s", "max_catch_up_s", "full_recovery_s")


def table() -> str:
    """The Markdown table of every result file, in the order of FAULTS."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for fault in FAULTS:
        path = RESULTS / f"{fault}.json"
        if path.exists():
            row = json.loads(path.read_text())["row"]
            lines.append("| " + " | ".join(str(row[c]) for c in COLUMNS) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("faults", nargs="*", help=f"{', '.join(FAULTS)} or all")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of publishing")
    parser.add_argument("--messages", type=int, default=12_000)
    parser.add_argument("--subscribers", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2, help="--workers of the hub")
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--delay", type=float, default=None, help="seconds into the publishing (default: a third)")
    parser.add_argument("--outage", type=float, default=3.0, help="seconds Redis is down, paused or asleep")
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--no-write", action="store_true", help="do not write bench/chaos/results/")
    parser.add_argument("--table", action="store_true", help="print the table of the stored results and exit")
    args = parser.parse_args()
    if args.table:
        print(table())
        return 0
    faults = list(FAULTS) if args.faults in (["all"], []) else args.faults
    failed = 0
    for fault in faults:
        config = chaos_config(fault, duration=args.duration, messages=args.messages, subscribers=args.subscribers,
                              workers=args.workers, publishers=args.publishers, seed=args.seed,
                              settle_timeout=max(20.0, args.duration / 3))
        print(f"== {fault}: {describe(config)}", flush=True)
        started = time.time()
        with cluster_processes(config) as running:
            report = asyncio.run(run_chaos(running, config, fault, delay=args.delay, outage=args.outage))
        print(report.summary(), flush=True)
        problems = report.traffic.problems()
        for problem in problems:
            print(f"PROBLEM: {problem}")
        failed += bool(problems)
        if not args.no_write:
            RESULTS.mkdir(parents=True, exist_ok=True)
            (RESULTS / f"{fault}.json").write_text(json.dumps({
                "row": report.row(), "problems": problems, "notes": report.fault.notes,
                "config": {k: v for k, v in vars(config).items() if k != "client_options"},
                "outage": args.outage, "delay": args.delay, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                "machine": f"{platform.machine()}, {platform.system()} {platform.release()}, python {platform.python_version()}",
            }, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
