"""Issue 13 test 5 at full size: publishes to a history topic at a fixed rate while clients keep
cutting their connections and recovering; prints what every client ended with.

usage: python bench/recovery_churn.py [--mode broker|single|both] [--rate 2000] [--clients 50]
                                      [--duration 30] [--out bench/results/recovery-churn-STAMP.json]

``broker``: redis-server on a free loopback port and two `uws-py serve --broker` processes; the
subscribers alternate between them, the publisher is on the second. ``single``: one
`uws-py serve` process, history in memory. Exit status 1 if any client missed an offset, got
one twice or could not recover. The scenario itself is tests/support/churn.py (the pytest
suite runs a short variant of it: tests/integration/broker/test_history_churn.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.churn import ChurnParams, ChurnResult, churn  # noqa: E402
from tests.support.procutil import RedisServer, UwsServer, metric_value, wait_until  # noqa: E402


def serve_args(params: ChurnParams, recover_limit: int) -> list[str]:
    # Room for the longest time away at this rate, with margin for a slow reconnect.
    size = max(1000, int(params.rate * 10))
    return ["--no-access-log", "--rate-limit", "off", "--history", f"chat.*:{size}:300",
            "--history-recover-limit", str(recover_limit)]


def run_mode(mode: str, params: ChurnParams, recover_limit: int) -> ChurnResult:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UWS_PY_")}
    hubs: list[UwsServer] = []
    redis_server = None
    try:
        if mode == "broker":
            redis_server = RedisServer().start()
            for _ in range(2):
                hubs.append(UwsServer("--broker", redis_server.url, *serve_args(params, recover_limit), env=env))
            for hub in hubs:
                wait_until(lambda hub=hub: metric_value(hub.port, "uws_broker_connected") == 1,
                           f"broker of pid {hub.pid} connected", timeout=15.0)
        else:
            hubs.append(UwsServer(*serve_args(params, recover_limit), env=env))
        ports = [hub.port for hub in hubs]
        return churn(ports, ports[-1], params, path=hubs[0].path or "/realtime")
    finally:
        for hub in hubs:
            hub.stop()
        if redis_server is not None:
            redis_server.cleanup()


def describe(mode: str, result: ChurnResult) -> str:
    p = result.params
    lines = [
        f"mode {mode}: {p['clients']} clients, {p['rate']:.0f} publishes/s for {p['duration']:.0f} s, "
        f"connected {p['connected'][0]}-{p['connected'][1]} s, away {p['disconnected'][0]}-{p['disconnected'][1]} s",
        f"  published            {result.published:,} ({result.publish_rate:,.0f}/s achieved; "
        f"last offset {result.last_offset:,}; publish errors {result.publish_errors}; "
        f"last PUBLISHED {result.publish_ack_lag_s:.2f} s after the last PUBLISH)",
        f"  delivered live       {result.delivered:,}",
        f"  recovered            {result.recovered:,} in {result.recoveries:,} recoveries",
        f"  expected             {result.published * p['clients']:,} (published x clients)",
        f"  duplicates           {result.duplicates}",
        f"  missing              {result.missing}",
        f"  out of order         {result.out_of_order}",
        f"  recovered=false      {result.recovered_false}",
        f"  insufficient_state   {result.insufficient_state}",
        f"  catch-up (SUBSCRIBE -> SUBSCRIBED) p50 {result.p50_catch_up_s * 1000:.1f} ms, "
        f"p99 {result.p99_catch_up_s * 1000:.1f} ms, max {result.max_catch_up_s * 1000:.1f} ms",
        f"  clients at the last offset {result.clients_at_last_offset}/{p['clients']}",
        f"  verdict              {'OK' if result.ok else 'FAILED'}",
    ]
    lines += [f"  error: {e}" for e in result.errors]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("broker", "single", "both"), default="both")
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--recover-limit", type=int, default=5000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    params = ChurnParams(rate=args.rate, clients=args.clients, duration=args.duration)
    modes = ("broker", "single") if args.mode == "both" else (args.mode,)
    document = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "loadavg_at_start": os.getloadavg(),
                "cores": os.cpu_count(), "command": "python bench/recovery_churn.py " + " ".join(sys.argv[1:]),
                "runs": {}}
    ok = True
    for mode in modes:
        result = run_mode(mode, params, args.recover_limit)
        print(describe(mode, result), flush=True)
        document["runs"][mode] = result.as_dict()
        ok = ok and result.ok
    out = args.out or ROOT / "bench" / "results" / f"recovery-churn-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=1))
    print(f"wrote {out}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
