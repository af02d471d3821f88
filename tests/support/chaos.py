"""Chaos during traffic (issue 19 item 3), shared by tests/integration/chaos/ and
bench/chaos/run.py: the zero-loss traffic of tests/support/zero_loss.py (acknowledged
publishes on a history topic, SDK subscribers checking every offset) against
``uws-py serve --workers 2 --broker redis://...`` with an AOF-backed redis-server, while one
fault happens:

- ``kill-worker``: SIGKILL of the worker holding the most connections; the supervisor starts
  a new one, its clients reconnect (to the other worker, or the new one) and recover.
- ``rolling-restart``: SIGHUP to the supervisor; every worker is replaced one by one.
- ``redis-restart``: redis-server killed (SIGKILL) and started again on its AOF after
  ``outage`` seconds.
- ``redis-pause``: ``CLIENT PAUSE <outage ms> ALL``: Redis holds every command, then runs them.
- ``redis-sleep``: ``DEBUG SLEEP <outage>``: Redis blocks entirely for that long.
- ``network-cuts``: the subscribers go through chaos proxies that cut each connection after
  0.2-2 s, the whole run (the zero-loss test's chaos, reused).

What "lost" means is :meth:`ZeroLossReport.problems` / :meth:`ZeroLossReport.lost`: an
acknowledged publish (PUBLISHED with its offset) that a subscriber did not receive; beyond
that, each subscriber must receive every offset the topic holds exactly once and in order.
Refused (UNAVAILABLE) and unanswered publishes are retried and counted apart: they are not
published until acknowledged.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Optional

from .procutil import HOST, children_of, pid_alive
from .zero_loss import Cluster, ZeroLossConfig, ZeroLossReport, run_zero_loss, wait_for_brokers

FAULTS = ("kill-worker", "rolling-restart", "redis-restart", "redis-pause", "redis-sleep", "network-cuts")


@dataclass
class FaultTimes:
    """When the fault started and when it was undone (the worker back with its broker
    connected, Redis answering again, the pause over), on the monotonic clock."""

    name: str
    injected: float = 0.0
    restored: float = 0.0
    notes: list[str] = field(default_factory=list)


@dataclass
class ChaosReport:
    """One chaos run: the traffic's report plus the fault's times and what follows from them."""

    fault: FaultTimes
    traffic: ZeroLossReport

    @property
    def fault_seconds(self) -> float:
        """Injection to restoration."""
        return self.fault.restored - self.fault.injected

    def full_recovery_seconds(self) -> float:
        """From the injection until every subscriber held every message acknowledged before the
        fault was undone: how long the system took to be whole again (0 without a fault)."""
        if not self.fault.injected:
            return 0.0
        acked_by_restore = [o for o, at in self.traffic.publishes.acked_at.items() if at <= self.fault.restored]
        latest = self.fault.restored
        for result in self.traffic.subscribers:
            arrival = dict(zip(result.offsets, result.arrivals))
            for offset in acked_by_restore:
                latest = max(latest, arrival.get(offset, float("inf")))
        return latest - self.fault.injected

    def longest_ack_gap(self) -> float:
        """The longest time between two consecutive acknowledgements: how long publishing stood still."""
        times = sorted(self.traffic.publishes.acked_at.values())
        return max((b - a for a, b in zip(times, times[1:])), default=0.0)

    def row(self) -> dict[str, Any]:
        """The numbers of the results table."""
        traffic = self.traffic
        return {
            "fault": self.fault.name,
            "published": len(traffic.publishes.acked) or traffic.published,
            "refused": traffic.publishes.refused,
            "unanswered": traffic.publishes.unanswered,
            "stored_twice": traffic.extra_copies,
            "subscribers": len(traffic.subscribers),
            "delivered": sum(len(r.offsets) for r in traffic.subscribers),
            "recovered": sum(r.recovered_publications for r in traffic.subscribers),
            "disconnects": sum(r.disconnects for r in traffic.subscribers),
            "lost": traffic.lost(),
            "duplicated": traffic.duplicated(),
            "problems": len(traffic.problems()),
            "fault_s": round(self.fault_seconds, 3),
            "longest_ack_gap_s": round(self.longest_ack_gap(), 3),
            "max_catch_up_s": round(max((r.max_catch_up for r in traffic.subscribers), default=0.0), 3),
            "full_recovery_s": round(self.full_recovery_seconds(), 3),
        }

    def summary(self) -> str:
        row = self.row()
        return (f"{self.traffic.summary()}\n  fault {self.fault.name}: " + ", ".join(f"{k}={v}" for k, v in row.items()
                                                                               if k != "fault")
                + "".join(f"\n  note: {note}" for note in self.fault.notes))


def chaos_config(fault: str, **overrides: Any) -> ZeroLossConfig:
    """The zero-loss configuration of a chaos run: one hub of two workers, AOF Redis,
    subscribers straight to the hub (through cutting proxies for ``network-cuts``), retried
    publishes."""
    if fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; one of {', '.join(FAULTS)}")
    values: dict[str, Any] = dict(hubs=1, workers=2, publishers=2, subscribers=6, append_only=True,
                                  retry_publishes=True, cut_connections=fault == "network-cuts",
                                  publish_timeout=5.0, topic="chaos.stream", redis_debug=fault == "redis-sleep")
    values.update(overrides)
    return ZeroLossConfig(**values)


def _socket_count(pid: int) -> int:
    """Open sockets of a process (its clients, its Redis connections, its listener)."""
    count = 0
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                    count += 1
            except OSError:
                pass
    except OSError:
        pass
    return count


def redis_command(port: int, *args: str, timeout: float = 5.0) -> bytes:
    """Sends one command to redis-server in RESP and returns the first reply line."""
    frame = f"*{len(args)}\r\n".encode() + b"".join(f"${len(a.encode())}\r\n{a}\r\n".encode() for a in args)
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(frame)
        return sock.recv(256).split(b"\r\n", 1)[0]


async def _wait(predicate: Callable[[], Any], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(predicate):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        await asyncio.sleep(0.05)


def make_fault(name: str, running: Cluster, config: ZeroLossConfig, times: FaultTimes, delay: float,
               outage: float) -> Optional[Callable[[], Awaitable[None]]]:
    """The coroutine that injects fault ``name`` ``delay`` seconds into the publishing and
    undoes it (for Redis, after ``outage`` seconds); None for ``network-cuts``, whose chaos
    is the proxies'."""
    hub = running.hubs[0]
    redis = running.redis

    async def kill_worker() -> None:
        workers = children_of(hub.pid)
        assert len(workers) == config.workers, f"workers of {hub.pid}: {workers}"
        victim = max(workers, key=_socket_count)
        times.notes.append(f"killed worker pid {victim} ({_socket_count(victim)} sockets; the other had "
                           f"{[_socket_count(w) for w in workers if w != victim]})")
        times.injected = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        await _wait(lambda: victim not in children_of(hub.pid) and len(children_of(hub.pid)) == config.workers,
                    "the supervisor restarting the killed worker", 30.0)
        await asyncio.to_thread(wait_for_brokers, hub, config.workers)

    async def rolling_restart() -> None:
        old = set(children_of(hub.pid))
        times.injected = time.monotonic()
        hub.signal(signal.SIGHUP)
        await _wait(lambda: not (old & set(children_of(hub.pid))) and len(children_of(hub.pid)) == config.workers
                    and not any(pid_alive(pid) for pid in old), "the rolling restart replacing every worker", 60.0)
        await asyncio.to_thread(wait_for_brokers, hub, config.workers)

    async def redis_restart() -> None:
        assert redis.process is not None
        times.injected = time.monotonic()
        redis.process.popen.kill()
        redis.process.popen.wait(5)
        redis.process.stop()
        redis.process = None
        await asyncio.sleep(outage)
        await asyncio.to_thread(redis.start)
        await asyncio.to_thread(wait_for_brokers, hub, config.workers, 30.0)

    async def redis_pause() -> None:
        times.injected = time.monotonic()
        reply = await asyncio.to_thread(redis_command, redis.port, "CLIENT", "PAUSE", str(int(outage * 1000)), "ALL")
        assert reply == b"+OK", reply
        await asyncio.sleep(outage)

    async def redis_sleep() -> None:
        times.injected = time.monotonic()
        reply = await asyncio.to_thread(redis_command, redis.port, "DEBUG", "SLEEP", str(outage),
                                        timeout=outage + 10)
        assert reply == b"+OK", reply

    bodies = {"kill-worker": kill_worker, "rolling-restart": rolling_restart, "redis-restart": redis_restart,
              "redis-pause": redis_pause, "redis-sleep": redis_sleep}
    body = bodies.get(name)
    if body is None:
        return None

    async def fault() -> None:
        await asyncio.sleep(delay)
        await body()
        times.restored = time.monotonic()

    return fault


async def run_chaos(running: Cluster, config: ZeroLossConfig, fault: str, delay: Optional[float] = None,
                    outage: float = 3.0) -> ChaosReport:
    """Runs the traffic with ``fault`` injected ``delay`` s in (default: a third of the
    publishing) and returns what happened, asserting nothing."""
    times = FaultTimes(fault)
    body = make_fault(fault, running, config, times, config.duration / 3 if delay is None else delay, outage)
    traffic = await run_zero_loss(running.ports, config, fault=body)
    return ChaosReport(times, traffic)
