"""What history topics cost (issue 13), as ratios measured in one run:

1. fan-out (scenario 5: 1000 subscribers, publish rate doubling until deliveries stop growing)
   through the full realtime stack on a plain topic and on a history topic, one process, with
   the raw App's scenario 5 beside them for reference;
2. publish-to-delivery latency p50/p99 with Redis, plain vs history topic, publisher and
   subscribers on different `--broker` workers (and on the same one);
3. recovery of 100 missed publications: time from SUBSCRIBE to SUBSCRIBED, in one process and
   with Redis.

usage: python bench/history.py [--rounds 3] [--skip-fanout] [--out bench/results/history-STAMP.json]
Needs bench/.build/loadgen (bash bench/build_loadgen.sh) and redis-server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

import orjson  # noqa: E402

from scenarios import scenarios  # noqa: E402
from tests.support.churn import WsProtocol, open_ws, percentile  # noqa: E402
from tests.support.procutil import Process, RedisServer, free_port, metric_value, wait_until  # noqa: E402

LOADGEN = BENCH / ".build" / "loadgen"
SERVERS = BENCH / "servers"
PYTHON = sys.executable
# Publishes/s of the fixed-rate fan-out (x 1000 subscribers): about a third of a core of server
# time on this machine, so the per-delivery cost dominates the loop's fixed costs.
FIXED_RATE = 1600


class BenchServer(Process):
    """A bench server script on a free port, waited for until it prints "listening"."""

    def __init__(self, script: str, *args: str) -> None:
        self.port = free_port()
        super().__init__([PYTHON, str(SERVERS / script), str(self.port), *args], env=dict(os.environ))
        import re

        self.wait_for_lines(re.compile(r"listening"), 1, 20.0)


# -- 1. fan-out ---------------------------------------------------------------------------------


FANOUT_VARIANTS = {
    "raw App, scenario 5": ("uwspy_pubsub.py", [], []),
    "realtime, plain topic": ("uwspy_realtime_pubsub.py", [], ["--topic", "bench", "--path", "/realtime", "--skip-first", "1"]),
    "realtime, history topic": ("uwspy_realtime_pubsub.py", ["--history"],
                                ["--topic", "bench", "--path", "/realtime", "--skip-first", "1"]),
}


def fanout_once(script: str, server_args: list[str], loadgen_args: list[str],
                fixed_rate: Optional[int] = None) -> dict[str, Any]:
    """One loadgen fan-out run: scenario 5's ramp, or one 3 s step at ``fixed_rate``."""
    scenario = next(s for s in scenarios(quick=True) if s.number == 5)
    server = BenchServer(script, *server_args)
    ramp = list(scenario.loadgen)
    if fixed_rate is not None:
        ramp += ["--rate-start", str(fixed_rate), "--rate-max", str(fixed_rate), "--step", "3"]
    try:
        command = [str(LOADGEN), "--port", str(server.port), "--mode", "fanout", "--server-pid", str(server.pid),
                   *ramp, *loadgen_args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        result = json.loads(done.stdout)
    finally:
        server.stop()
    # At a fixed rate the step is measured whether or not it was sustained (the CPU per
    # delivery stays meaningful); the ramp reports its best sustained step.
    best = result.get("best", {}) if fixed_rate is None else (result.get("steps") or [{}])[-1]
    return {"ok": result.get("ok"), "errors": {k: v for k, v in result.get("errors", {}).items() if v},
            "best_rate": result.get("best_rate"), "deliveries_per_s": best.get("deliveries_per_s"),
            "p99_us": best.get("latency_us", {}).get("p99"), "server_cpu": best.get("server_cpu_fraction"),
            "loadgen_cpu": best.get("loadgen_cpu_fraction"), "loadgen_bottleneck": best.get("loadgen_bottleneck"),
            "server_cpu_us_per_delivery": best.get("server_cpu_us_per_msg")}


def bench_fanout(rounds: int) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in FANOUT_VARIANTS}
    names = list(FANOUT_VARIANTS)
    for round_number in range(rounds):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            runs[name].append(fanout_once(*FANOUT_VARIANTS[name]))
            print(f"fan-out round {round_number + 1}/{rounds} {name}: {runs[name][-1]}", file=sys.stderr, flush=True)
    summary = {}
    for name, results in runs.items():
        good = [r for r in results if r["ok"] and r["deliveries_per_s"]]
        summary[name] = {
            "clean_rounds": len(good), "rounds": len(results),
            "deliveries_per_s": statistics.median(r["deliveries_per_s"] for r in good) if good else None,
            "p99_us": statistics.median(r["p99_us"] for r in good) if good else None,
            "best_rate": statistics.median(r["best_rate"] for r in good) if good else None,
            "loadgen_bound": any(r["loadgen_bottleneck"] for r in good),
        }
    plain = summary["realtime, plain topic"]["deliveries_per_s"]
    history = summary["realtime, history topic"]["deliveries_per_s"]
    # The same work at a fixed rate every server sustains: the server's own CPU time per
    # delivery, which other load on the machine disturbs much less than the ramp's peak.
    costs: dict[str, list[float]] = {name: [] for name in names[1:]}
    for round_number in range(rounds + 2):
        for name in (names[1:] if round_number % 2 == 0 else names[:0:-1]):
            result = fanout_once(*FANOUT_VARIANTS[name], fixed_rate=FIXED_RATE)
            print(f"fan-out at {FIXED_RATE}/s round {round_number + 1}/{rounds + 2} {name}: {result}", file=sys.stderr,
                  flush=True)
            if not result["errors"] and result["server_cpu_us_per_delivery"]:
                costs[name].append(result["server_cpu_us_per_delivery"])
    cost = {name: statistics.median(values) if values else None for name, values in costs.items()}
    plain_cost, history_cost = cost["realtime, plain topic"], cost["realtime, history topic"]
    return {"runs": runs, "summary": summary, "history_vs_plain": history / plain if plain and history else None,
            "fixed_rate": FIXED_RATE, "cpu_us_per_delivery": cost, "cpu_runs": costs,
            "cost_ratio_plain_over_history": plain_cost / history_cost if plain_cost and history_cost else None}


# -- 2. publish-to-delivery latency with Redis --------------------------------------------------


async def latency(publisher_port: int, subscriber_port: int, topic: str, rate: float, seconds: float,
                  subscribers: int) -> dict[str, Any]:
    """Publishes ``{"t": monotonic_ns}`` at ``rate`` and measures when each subscriber gets it."""
    samples: list[float] = []
    expected = 0
    measure_from = [float("inf")]  # send time (ns) of the first measured publish

    def on_message(payload: bytes) -> None:
        if payload.startswith(b'{"type":"MESSAGE"'):
            sent = orjson.loads(payload)["data"]["t"]
            if sent >= measure_from[0]:
                samples.append((time.monotonic_ns() - sent) / 1000)

    readers = []
    for _ in range(subscribers):
        subscribed = asyncio.Event()

        def on_text(payload: bytes, subscribed: asyncio.Event = subscribed) -> None:
            if payload.startswith(b'{"type":"SUBSCRIBED"'):
                subscribed.set()
            else:
                on_message(payload)

        reader = await open_ws(subscriber_port, "/realtime", on_text)
        reader.send({"type": "SUBSCRIBE", "topic": topic})
        await asyncio.wait_for(subscribed.wait(), 10)
        readers.append(reader)
    await asyncio.sleep(0.3)  # the broker's subscription on a fresh worker
    publisher: WsProtocol = await open_ws(publisher_port, "/realtime", lambda payload: None)
    warmup = int(rate * 0.5)
    total = warmup + int(rate * seconds)
    started = time.monotonic()
    for n in range(total):
        if n == warmup:
            measure_from[0] = time.monotonic_ns()
            started = time.monotonic()
        publisher.send({"type": "PUBLISH", "topic": topic, "data": {"t": time.monotonic_ns()}})
        await asyncio.sleep(1 / rate)
        if n >= warmup:
            expected += subscribers
    achieved = (total - warmup) / (time.monotonic() - started)
    await asyncio.sleep(1.0)
    for ws in readers + [publisher]:
        ws.abort()
    return {"topic": topic, "samples": len(samples), "expected": expected, "publish_rate": achieved,
            "p50_us": percentile(samples, 0.5), "p99_us": percentile(samples, 0.99), "max_us": max(samples, default=0)}


def bench_latency(rate: float, seconds: float, subscribers: int) -> dict[str, Any]:
    redis_server = RedisServer().start()
    workers = []
    try:
        for _ in range(2):
            workers.append(BenchServer("uwspy_realtime_pubsub.py", "--history", "--broker", redis_server.url))
        for worker in workers:
            wait_until(lambda w=worker: metric_value(w.port, "uws_broker_connected") == 1, "broker up", timeout=15)
        results = {}
        for placement, (pub, sub) in {"across workers": (workers[0], workers[1]),
                                      "same worker": (workers[0], workers[0])}.items():
            for kind, topic in (("plain", "plain.lat"), ("history", "hist.lat")):
                results[f"{kind}, {placement}"] = asyncio.run(
                    latency(pub.port, sub.port, f"{topic}.{placement[0]}", rate, seconds, subscribers))
                print(f"latency {kind}, {placement}: {results[f'{kind}, {placement}']}", file=sys.stderr, flush=True)
        return results
    finally:
        for worker in workers:
            worker.stop()
        redis_server.cleanup()


# -- 3. recovery of 100 missed publications -----------------------------------------------------


async def recovery_times(reader_port: int, publisher_port: int, topic: str, repeats: int, missed: int) -> dict[str, Any]:
    publisher_replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    publisher = await open_ws(publisher_port, "/realtime", lambda p: publisher_replies.put_nowait(orjson.loads(p)))
    assert (await publisher_replies.get())["type"] == "CONNECTED"
    times: list[float] = []
    outcomes: list[tuple[bool, int]] = []
    position: Optional[dict[str, Any]] = None
    for _ in range(repeats + 1):
        replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        reader = await open_ws(reader_port, "/realtime", lambda p, q=replies: q.put_nowait(orjson.loads(p)))
        request: dict[str, Any] = {"type": "SUBSCRIBE", "topic": topic}
        if position is not None:
            request.update(recover=True, since=position)
        while (await replies.get())["type"] != "CONNECTED":
            pass
        started = time.perf_counter()
        reader.send(request)
        while True:
            reply = await replies.get()
            if reply["type"] == "SUBSCRIBED":
                break
        elapsed = time.perf_counter() - started
        if position is not None:
            times.append(elapsed)
            outcomes.append((reply["recovered"], len(reply["publications"])))
        position = {"epoch": reply["epoch"], "offset": reply["offset"]}
        reader.abort()
        for n in range(missed):  # missed while away; PUBLISHED says each is in the history
            publisher.send({"type": "PUBLISH", "topic": topic, "id": n, "data": {"n": n, "text": "x" * 40}})
        for _ in range(missed):
            assert (await publisher_replies.get())["type"] == "PUBLISHED"
    publisher.abort()
    return {"repeats": repeats, "missed": missed,
            "all_recovered": all(ok and count == missed for ok, count in outcomes),
            "p50_ms": percentile(times, 0.5) * 1000, "p99_ms": percentile(times, 0.99) * 1000,
            "max_ms": max(times) * 1000}


def bench_recovery(repeats: int, missed: int) -> dict[str, Any]:
    results = {}
    single = BenchServer("uwspy_realtime_pubsub.py", "--history")
    try:
        results["one process"] = asyncio.run(recovery_times(single.port, single.port, "hist.rec", repeats, missed))
    finally:
        single.stop()
    redis_server = RedisServer().start()
    workers = []
    try:
        workers = [BenchServer("uwspy_realtime_pubsub.py", "--history", "--broker", redis_server.url) for _ in range(2)]
        for worker in workers:
            wait_until(lambda w=worker: metric_value(w.port, "uws_broker_connected") == 1, "broker up", timeout=15)
        results["Redis, publisher on another worker"] = asyncio.run(
            recovery_times(workers[1].port, workers[0].port, "hist.rec", repeats, missed))
    finally:
        for worker in workers:
            worker.stop()
        redis_server.cleanup()
    for name, result in results.items():
        print(f"recovery {name}: {result}", file=sys.stderr, flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-fanout", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if not LOADGEN.exists():
        subprocess.run(["bash", str(BENCH / "build_loadgen.sh")], check=True)
    document: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "cores": os.cpu_count(),
                                "loadavg_at_start": os.getloadavg(),
                                "command": "python bench/history.py " + " ".join(sys.argv[1:])}
    if not args.skip_fanout:
        document["fanout"] = bench_fanout(args.rounds)
    document["latency"] = bench_latency(rate=500, seconds=10, subscribers=10)
    document["recovery"] = bench_recovery(repeats=50, missed=100)
    out = args.out or BENCH / "results" / f"history-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(document, indent=1))
    print(render(document))
    print(f"wrote {out}", file=sys.stderr)
    return 0


def render(document: dict[str, Any]) -> str:
    lines = [f"- date: {document['date']}; command: `{document['command']}`; "
             f"load average at start {' '.join(f'{x:.2f}' for x in document['loadavg_at_start'])}", ""]
    fanout = document.get("fanout")
    if fanout:
        lines += ["| fan-out, 1000 subscribers (one process) | deliveries/s | p99 delivery µs | publishes/s | clean rounds |",
                  "|---|---|---|---|---|"]
        for name, s in fanout["summary"].items():
            bound = " (loadgen-bound)" if s["loadgen_bound"] else ""
            lines.append(f"| {name} | {s['deliveries_per_s'] or 0:,.0f}{bound} | {s['p99_us'] or 0:,.0f} | "
                         f"{s['best_rate'] or 0:,.0f} | {s['clean_rounds']}/{s['rounds']} |")
        ratio = fanout["history_vs_plain"]
        lines += ["", f"History topic vs plain topic, best sustained deliveries/s: **{ratio:.2f}x**" if ratio
                  else "ratio: n/a", ""]
        cost = fanout["cpu_us_per_delivery"]
        lines += [f"| fan-out at {fanout['fixed_rate']} publishes/s x 1000 subscribers | server CPU µs per delivery | runs |",
                  "|---|---|---|"]
        for name, value in cost.items():
            lines.append(f"| {name} | {value or 0:.3f} | {', '.join(f'{v:.3f}' for v in fanout['cpu_runs'][name])} |")
        cost_ratio = fanout["cost_ratio_plain_over_history"]
        lines += ["", f"Throughput per CPU, history topic vs plain topic (plain cost / history cost): "
                  f"**{cost_ratio:.2f}x**" if cost_ratio else "cost ratio: n/a", ""]
    lines += ["| publish -> delivery, Redis broker, 10 subscribers | publishes/s | p50 µs | p99 µs | max µs | received/expected |",
              "|---|---|---|---|---|---|"]
    for name, r in document["latency"].items():
        lines.append(f"| {name} | {r['publish_rate']:,.0f} | {r['p50_us']:,.0f} | {r['p99_us']:,.0f} | {r['max_us']:,.0f} | "
                     f"{r['samples']}/{r['expected']} |")
    lines += ["", "| recovery of 100 missed, SUBSCRIBE -> SUBSCRIBED | p50 ms | p99 ms | max ms | all recovered |",
              "|---|---|---|---|---|"]
    for name, r in document["recovery"].items():
        lines.append(f"| {name} ({r['repeats']} times) | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.2f} | "
                     f"{r['all_recovered']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
