"""The SDK's zero-loss scenario with parameters (the pytest version, with the issue's numbers,
is tests/integration/sdk/test_zero_loss.py): SDK subscribers behind chaos proxies that cut
every connection at random, hubs sharing one redis-server, a paced publisher on a history
topic; prints messages, disconnects, recovered / recovered=false counts and the catch-up
times, and exits 1 when a subscriber missed, repeated or reordered a message.

usage: python bench/sdk_zero_loss.py [--duration 60] [--messages 20000] [--subscribers 5]
           [--hubs 2] [--workers 1] [--publishers 2] [--min-life 0.2] [--max-life 2.0] [--seed 14]
           [--history-size 5000] [--recover-limit 5000] [--json]

Run from the repository root with the package importable (PYTHONPATH=python when the native
module was copied there, or an installed uws-py).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.zero_loss import ZeroLossConfig, cluster, describe, run_zero_loss  # noqa: E402


def main() -> int:
    defaults = ZeroLossConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=defaults.duration, help="seconds of publishing")
    parser.add_argument("--messages", type=int, default=defaults.messages)
    parser.add_argument("--subscribers", type=int, default=defaults.subscribers)
    parser.add_argument("--hubs", type=int, default=defaults.hubs, help="server processes sharing redis")
    parser.add_argument("--workers", type=int, default=defaults.workers, help="--workers of each hub")
    parser.add_argument("--publishers", type=int, default=defaults.publishers)
    parser.add_argument("--min-life", type=float, default=defaults.min_life, help="shortest proxied connection (s)")
    parser.add_argument("--max-life", type=float, default=defaults.max_life, help="longest proxied connection (s)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--history-size", type=int, default=defaults.history_size)
    parser.add_argument("--recover-limit", type=int, default=defaults.recover_limit)
    parser.add_argument("--json", action="store_true", help="also print the per-subscriber results as JSON")
    args = parser.parse_args()
    config = ZeroLossConfig(duration=args.duration, messages=args.messages, subscribers=args.subscribers,
                            hubs=args.hubs, workers=args.workers, publishers=args.publishers, min_life=args.min_life,
                            max_life=args.max_life, seed=args.seed, history_size=args.history_size,
                            recover_limit=args.recover_limit,
                            settle_timeout=max(defaults.settle_timeout, args.duration / 3))
    print(f"config: {describe(config)}", flush=True)
    with cluster(config) as ports:
        report = asyncio.run(run_zero_loss(ports, config))
    print(report.summary())
    if args.json:
        results = [{k: v for k, v in dataclasses.asdict(r).items()
                    if k not in ("offsets", "numbers", "recovered_flags")} for r in report.subscribers]
        print(json.dumps({"published": report.published, "cuts": report.cuts, "subscribers": results}))
    for problem in report.problems():
        print(f"PROBLEM: {problem}")
    return 1 if report.problems() else 0


if __name__ == "__main__":
    sys.exit(main())
