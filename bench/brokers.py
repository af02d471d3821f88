"""Publish throughput and delivery latency of each broker backend, measured in one run:
one redis-server, a 3-master Redis Cluster (sharded pub/sub) and one nats-server, each started
on loopback ports by this script (tests/support's process helpers) and stopped by PID.

Two broker clients in this process stand for two server processes: A publishes, B is
subscribed to every topic. Both go through the real broker classes (their background thread,
the bridge into a "server loop", the framing), so the numbers include what a worker pays, not
only the broker's wire time.

- throughput: A publishes ``--messages`` messages over ``--topics`` topics as fast as it can;
  the rate is messages / (time from the first publish until B has received the last).
- latency: A publishes one message every ``--interval`` ms, ``--samples`` times; each carries
  its send time, and B's loop thread notes the receive time: p50 / p99 / max.

Usage: ``PYTHONPATH=python .venv/bin/python bench/brokers.py [--messages 20000] [--topics 100]``
(prints a Markdown table; ``--json FILE`` also writes the numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import sys
import time
from typing import Any, Callable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tests.support.procutil import NatsServer, RedisCluster, RedisServer  # noqa: E402
from uws_py.broker import from_url  # noqa: E402


class Loop:
    """Stands in for a server's loop thread: what a broker schedules is run here."""

    def __init__(self) -> None:
        self.calls: queue.Queue = queue.Queue()

    def schedule(self, callback: Callable[[], None]) -> None:
        self.calls.put(callback)

    def pump(self, until: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline:
                raise TimeoutError("the broker did not deliver in time")
            try:
                self.calls.get(timeout=0.05)()
            except queue.Empty:
                pass


def measure(url: str, messages: int, topics: int, samples: int, interval: float) -> dict[str, Any]:
    received: list = []
    arrivals: list = []
    loop = Loop()
    publisher, subscriber = from_url(url), from_url(url)
    publisher.start(lambda topic, payload: None, loop.schedule)
    subscriber.start(lambda topic, payload: (received.append(payload), arrivals.append(time.perf_counter())),
                     loop.schedule)
    names = [f"bench.{n}" for n in range(topics)]
    ready: list = []
    try:
        for name in names + ["bench.latency"]:
            subscriber.subscribe(name, ready=lambda: ready.append(1))
        loop.pump(lambda: len(ready) == topics + 1, 30.0)
        publisher.ready.wait(10.0)
        # A warm-up round trip, so that connections are open before timing.
        publisher.publish("bench.latency", b"warm-up")
        loop.pump(lambda: len(received) == 1, 10.0)
        received.clear()
        arrivals.clear()

        payload = b'{"type":"MESSAGE","topic":"bench","data":"' + b"x" * 64 + b'","from":null}'
        started = time.perf_counter()
        for n in range(messages):
            publisher.publish(names[n % topics], payload)
        loop.pump(lambda: len(received) >= messages, 120.0)
        elapsed = arrivals[messages - 1] - started

        received.clear()
        arrivals.clear()
        sent_at: list = []
        for n in range(samples):
            sent_at.append(time.perf_counter())
            publisher.publish("bench.latency", str(n).encode())
            loop.pump(lambda: len(received) > n, 10.0)
            time.sleep(interval / 1000.0)
        latencies = sorted((arrivals[int(p)] - sent_at[int(p)]) * 1000.0 for p in received)
        return {
            "messages": messages,
            "throughput_per_s": messages / elapsed,
            "latency_ms_p50": statistics.median(latencies),
            "latency_ms_p99": latencies[int(len(latencies) * 0.99) - 1],
            "latency_ms_max": latencies[-1],
            "publish_failures": publisher.stats()["publish_failures"],
        }
    finally:
        publisher.stop()
        subscriber.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--topics", type=int, default=100)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--interval", type=float, default=2.0, help="ms between latency samples")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args()

    results: dict[str, Any] = {}
    backends = [("single Redis", RedisServer, lambda s: s.url), ("Redis Cluster (3 masters)",
                lambda: RedisCluster(masters=3), lambda s: s.url), ("NATS", NatsServer, lambda s: s.url)]
    for name, make, url_of in backends:
        server = make().start()
        try:
            results[name] = measure(url_of(server), args.messages, args.topics, args.samples, args.interval)
        finally:
            server.cleanup()
        print(f"{name}: {results[name]}", file=sys.stderr)

    print(f"| broker | publish throughput (msg/s, {args.messages} x {args.topics} topics) "
          f"| latency p50 (ms) | p99 (ms) | max (ms) |")
    print("|---|---:|---:|---:|---:|")
    for name, numbers in results.items():
        print(f"| {name} | {numbers['throughput_per_s']:,.0f} | {numbers['latency_ms_p50']:.2f} "
              f"| {numbers['latency_ms_p99']:.2f} | {numbers['latency_ms_max']:.2f} |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"results": results, "args": vars(args), "cpus": os.cpu_count(),
                       "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
