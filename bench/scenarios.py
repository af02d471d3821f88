"""The benchmark scenarios: the load generator's arguments and the metrics each one reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional


@dataclass(frozen=True)
class Metric:
    key: str
    title: str
    higher_is_better: bool
    read: Callable[[dict], Optional[float]]
    fmt: str = "{:,.0f}"


def _get(*path: str) -> Callable[[dict], Optional[float]]:
    def read(result: dict) -> Optional[float]:
        value: Any = result
        for key in path:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return value if isinstance(value, (int, float)) else None

    return read


MSGS = Metric("msgs_per_s", "msg/s", True, _get("msgs_per_s"))
CPU_PER_MSG = Metric("server_cpu_us_per_msg", "server CPU µs/msg", False, _get("server_cpu_us_per_msg"), "{:.2f}")
P50 = Metric("p50_us", "p50 µs", False, _get("latency_us", "p50"), "{:,.1f}")
P99 = Metric("p99_us", "p99 µs", False, _get("latency_us", "p99"), "{:,.1f}")
MB_PER_S = Metric("mb_per_s", "MB/s", True, lambda r: None if r.get("bytes_per_s") is None else r["bytes_per_s"] / 1e6, "{:,.1f}")
DELIVERIES = Metric("deliveries_per_s", "deliveries/s", True, _get("best", "deliveries_per_s"))
DELIVERY_P99 = Metric("delivery_p99_us", "p99 delivery µs", False, _get("best", "latency_us", "p99"), "{:,.0f}")
BEST_RATE = Metric("best_rate", "publishes/s", True, _get("best_rate"))
# The best sustained step's server CPU over its window (and the catch-up after it) per delivery.
CPU_PER_DELIVERY = Metric("server_cpu_us_per_delivery", "server CPU µs/delivery", False,
                          _get("best", "server_cpu_us_per_msg"), "{:.3f}")


def _last_step(key: str) -> Callable[[dict], Optional[float]]:
    """``key`` of the fixed-rate step (the last one run, a retry if the first fell short)."""

    def read(result: dict) -> Optional[float]:
        steps = result.get("steps")
        if not isinstance(steps, list) or not steps:
            return None
        value = steps[-1].get(key)
        return value if isinstance(value, (int, float)) else None

    return read


STEP_CPU_PER_DELIVERY = Metric("step_cpu_us_per_delivery", "server CPU µs/delivery", False,
                               _last_step("server_cpu_us_per_msg"), "{:.3f}")
STEP_DELIVERIES = Metric("step_deliveries_per_s", "deliveries/s in the window", True, _last_step("deliveries_per_s"))
STEP_DELIVERED = Metric("step_delivered_ratio", "delivered", True, _last_step("delivered_ratio"), "{:.3f}")
RSS_PER_CONN = Metric("rss_per_conn", "RSS bytes/conn", False, _get("server_rss_bytes_per_connection"))


@dataclass(frozen=True)
class Scenario:
    number: int
    title: str
    kind: str  # "echo", "fanout", "idle", "realtime", "realtime_fanout" or "unavailable"
    loadgen: list[str] = field(default_factory=list)
    metrics: tuple[Metric, ...] = ()
    deflate: bool = False
    unavailable: str = ""  # why nobody can run it yet
    # Load generator threads (echo-style kinds only): 2 where one loop was the bottleneck
    # ("loadgen-bound" in the results of 2026-11-26); bench/run.py --threads overrides it.
    threads: int = 1
    # Extra loadgen arguments against a server running the realtime stack (not a raw echo).
    realtime_loadgen: list[str] = field(default_factory=list)
    # Requests in one frame (a BATCH's items): the report also gives the cost per item.
    items: int = 1

    @property
    def primary(self) -> Metric:
        return self.metrics[0]

    @property
    def threaded(self) -> bool:
        """Whether the load generator may split its connections over threads (request/reply)."""
        return self.kind in ("echo", "realtime")

    @property
    def connections(self) -> int:
        return int(self.loadgen[self.loadgen.index("--connections") + 1])


def scenarios(quick: bool) -> list[Scenario]:
    """All scenarios, timed for --quick or for a full run."""
    warm, measure = ("1", "3") if quick else ("3", "10")
    timing = ["--warmup", warm, "--duration", measure]
    return [
        Scenario(1, "Echo small: 100 conns × 16 in flight, 32 B text", "echo",
                 ["--connections", "100", "--inflight", "16", "--size", "32", "--payload", "text", *timing],
                 (MSGS, CPU_PER_MSG, P99)),
        Scenario(2, "Echo uWS-style: 500 conns × 1 in flight, 512 B binary", "echo",
                 ["--connections", "500", "--inflight", "1", "--size", "512", "--payload", "binary", *timing],
                 (MSGS, CPU_PER_MSG, P99), threads=2),
        Scenario(3, "Large: 10 conns × 1 in flight, 64 KiB binary", "echo",
                 ["--connections", "10", "--inflight", "1", "--size", "65536", "--payload", "binary", *timing],
                 (MB_PER_S, CPU_PER_MSG, P99), threads=2),
        Scenario(4, "Latency: 1 conn, 1 in flight, 32 B text", "echo",
                 ["--connections", "1", "--inflight", "1", "--size", "32", "--payload", "text", *timing],
                 (P99, P50, CPU_PER_MSG)),
        Scenario(5, "Fan-out: 1000 subscribers, publisher rate doubling until deliveries stop growing", "fanout",
                 ["--connections", "1000", "--rate-start", "25", "--rate-max", "51200", "--publish-size", "64",
                  "--step", "1" if quick else "3"],
                 (DELIVERIES, DELIVERY_P99, BEST_RATE, CPU_PER_DELIVERY)),
        Scenario(6, "Idle: 10 000 connections held open", "idle",
                 ["--connections", "10000", "--hold", "2" if quick else "5", "--connect-concurrency", "128"],
                 (RSS_PER_CONN,)),
        Scenario(7, "Compression: 100 conns × 4 in flight, 1 KiB JSON, permessage-deflate", "echo",
                 ["--connections", "100", "--inflight", "4", "--size", "1024", "--payload", "json", "--deflate", *timing],
                 (MSGS, CPU_PER_MSG, P99), deflate=True, threads=2),
        # uws-py runs RealtimeServer (JWT, routing, rate limit, metrics); the others their raw echo.
        Scenario(8, "Realtime stack vs raw echo: 100 conns × 16 in flight, 64 B JSON requests",
                 "realtime",
                 ["--connections", "100", "--inflight", "16", "--size", "64", "--payload", "request", *timing],
                 (MSGS, CPU_PER_MSG, P99)),
        # RealtimeServer answers the built-in PING (no application code) with PONG and the id;
        # the others, and uws-py's raw App, echo the PING's bytes.
        Scenario(9, "Realtime built-in PING vs raw echo: 100 conns × 16 in flight, 37 B PING requests",
                 "realtime",
                 ["--connections", "100", "--inflight", "16", "--payload", "ping", *timing],
                 (MSGS, CPU_PER_MSG, P99), realtime_loadgen=["--reply", "pong"]),
        # A client's PUBLISH through RealtimeServer against app.publish from uws-py's raw App
        # (servers/uwspy_app_fanout.py: the same SUBSCRIBE/PUBLISH/MESSAGE bytes); scenario 5's ramp.
        Scenario(10, "Realtime PUBLISH fan-out: 1000 subscribers, RealtimeServer vs raw App app.publish",
                 "realtime_fanout",
                 ["--connections", "1000", "--rate-start", "25", "--rate-max", "51200", "--publish-size", "64",
                  "--step", "1" if quick else "3", "--topic", "bench", "--path", "/realtime"],
                 (DELIVERIES, DELIVERY_P99, BEST_RATE, CPU_PER_DELIVERY), realtime_loadgen=["--skip-first", "1"]),
        # Scenario 10's servers at one fixed rate, so that both pay for the same publishes/s
        # (a ramp's best steps differ, and a slow step's CPU per delivery is mostly idle cost).
        Scenario(11, "Realtime fan-out cost: 1000 subscribers at 400 publishes/s, RealtimeServer vs raw App",
                 "realtime_fanout",
                 ["--connections", "1000", "--rate-start", "400", "--rate-max", "400", "--publish-size", "64",
                  "--step", "2" if quick else "5", "--topic", "bench", "--path", "/realtime"],
                 (STEP_CPU_PER_DELIVERY, STEP_DELIVERIES, STEP_DELIVERED), realtime_loadgen=["--skip-first", "1"]),
        # The other built-ins, in scenario 9's shape: RealtimeServer answers them in C (no
        # application code); the others, and uws-py's raw App, echo the request's bytes.
        Scenario(12, "Realtime built-in SUBSCRIBE/UNSUBSCRIBE vs raw echo: 100 conns × 16 in flight, "
                 "one topic subscribed and unsubscribed in turn", "realtime",
                 ["--connections", "100", "--inflight", "16", "--payload", "subscribe", *timing],
                 (MSGS, CPU_PER_MSG, P99), realtime_loadgen=["--reply", "subscribed"]),
        Scenario(13, "Realtime built-in PUBLISH (with id, no subscriber) vs raw echo: 100 conns × 16 in flight",
                 "realtime",
                 ["--connections", "100", "--inflight", "16", "--payload", "publish", *timing],
                 (MSGS, CPU_PER_MSG, P99), realtime_loadgen=["--reply", "published"]),
        # One frame = a BATCH of 4 PINGs (one BATCH reply of 4 PONGs): msg/s and CPU are per frame.
        Scenario(14, "Realtime built-in BATCH of 4 PINGs vs raw echo: 100 conns × 16 in flight, per frame",
                 "realtime",
                 ["--connections", "100", "--inflight", "16", "--payload", "batch", *timing],
                 (MSGS, CPU_PER_MSG, P99), realtime_loadgen=["--reply", "batch"], items=4),
    ]
