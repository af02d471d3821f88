"""The SDK's zero-loss scenario (issue 14 test a), shared by the pytest test and
bench/sdk_zero_loss.py: SDK subscribers reach server processes that share one redis-server
through chaos proxies that cut every connection after 0.2-2 s, while a publisher (connected
straight to the servers, each publish acknowledged) publishes numbered messages on a history
topic. Every subscriber must end with every message exactly once, in offset order.

The publisher does not go through a proxy on purpose: the test is about the subscribers'
recovery, and a publish made without ``ack`` on a connection that is then cut is lost by
design (docs/howto/python-client.md). Every publish here waits for its PUBLISHED, so a refused
or lost publish fails the run instead of showing up as a missing message.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

from uws_py.sdk import ClientOptions, ClientState, Publication, RealtimeClient, SubscribedEvent, connect

from .chaos_proxy import ChaosProxy
from .procutil import HOST, RedisServer, UwsServer, metric_value, wait_until


@dataclass
class ZeroLossConfig:
    """The knobs of one run; the defaults are the issue's numbers."""

    duration: float = 60.0          # seconds of publishing (and of chaos)
    messages: int = 20_000          # published in total, evenly paced over duration
    subscribers: int = 5
    hubs: int = 2                   # server processes sharing the redis-server
    workers: int = 1                # --workers of each hub (SO_REUSEPORT: the kernel picks one per connection)
    publishers: int = 2             # one per hub in turn; offsets are one sequence anyway
    min_life: float = 0.2           # each proxied connection is cut after uniform(min, max) s
    max_life: float = 2.0
    seed: int = 14
    history_size: int = 5000        # kept per topic; a recovery needs what one outage missed
    recover_limit: int = 5000
    settle_timeout: float = 20.0    # after the last publish, to receive the rest
    topic: str = "zl.stream"
    client_options: ClientOptions = field(default_factory=lambda: ClientOptions(
        min_delay=0.05, max_delay=0.5, open_timeout=3.0, request_timeout=5.0, ping_interval=5.0,
        ping_timeout=3.0))


@dataclass
class SubscriberResult:
    """What one subscriber received and went through."""

    offsets: list[int] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)
    recovered_flags: list[bool] = field(default_factory=list)
    disconnects: int = 0
    subscribes: int = 0
    recovered: int = 0               # SUBSCRIBED with recovered: true
    not_recovered: int = 0           # SUBSCRIBED with wasRecovering and recovered: false (a gap)
    recovered_publications: int = 0
    duplicates_skipped: int = 0
    max_catch_up: float = 0.0        # connection lost -> recovered publications delivered
    max_delay: float = 0.0           # publish -> delivery of one message
    gap_ranges: list[tuple[int, int]] = field(default_factory=list)  # (since, position] of each gap


@dataclass
class ZeroLossReport:
    """The outcome of a run: per-subscriber results, the chaos done, and problems found."""

    config: ZeroLossConfig
    published: int
    publish_seconds: float
    cuts: int
    subscribers: list[SubscriberResult]

    def problems(self) -> list[str]:
        """Every way a subscriber missed the guarantee (empty: zero loss). Offsets lost in a
        gap the SDK reported (recovered=false) are told apart from silent loss."""
        found: list[str] = []
        expected = list(range(1, self.published + 1))
        for index, result in enumerate(self.subscribers):
            if result.offsets == expected:
                if sorted(result.numbers) != list(range(self.published)):
                    found.append(f"subscriber {index}: the payloads are not each of 0..{self.published - 1} once")
                continue
            missing = set(expected) - set(result.offsets)
            in_gaps = {o for o in missing if any(low < o <= high for low, high in result.gap_ranges)}
            silent = sorted(missing - in_gaps)
            twice = sorted(o for o, count in collections.Counter(result.offsets).items() if count > 1)
            out_of_order = sum(1 for a, b in zip(result.offsets, result.offsets[1:]) if b <= a)
            if in_gaps:
                found.append(f"subscriber {index}: {len(in_gaps)} lost in {len(result.gap_ranges)} reported gap(s)")
            if silent or twice or out_of_order:
                found.append(f"subscriber {index}: {len(result.offsets)} received, {len(silent)} missing without a "
                             f"reported gap (first {silent[:10]}), {len(twice)} twice (first {twice[:10]}), "
                             f"{out_of_order} out of order")
        return found

    def summary(self) -> str:
        """The numbers the issue asks for, one line per subscriber and a total."""
        lines = [f"zero-loss: {self.published} messages published in {self.publish_seconds:.1f} s on "
                 f"{self.config.hubs} hub(s) x {self.config.workers} worker(s) with redis, {len(self.subscribers)} subscribers through chaos proxies "
                 f"(cut after {self.config.min_life}-{self.config.max_life} s): {self.cuts} cuts"]
        for index, r in enumerate(self.subscribers):
            lines.append(
                f"  subscriber {index}: {len(r.offsets)} received, {r.disconnects} disconnects, "
                f"{r.subscribes} subscribes, recovered {r.recovered} / recovered=false {r.not_recovered}, "
                f"{r.recovered_publications} recovered publications, {r.duplicates_skipped} duplicates skipped, "
                f"max catch-up {r.max_catch_up:.3f} s, max delay {r.max_delay:.3f} s")
        total = sum(len(r.offsets) for r in self.subscribers)
        lines.append(
            f"  total: {total} deliveries, {sum(r.disconnects for r in self.subscribers)} disconnects, "
            f"recovered {sum(r.recovered for r in self.subscribers)} / recovered=false "
            f"{sum(r.not_recovered for r in self.subscribers)}, max catch-up "
            f"{max((r.max_catch_up for r in self.subscribers), default=0.0):.3f} s, problems: "
            f"{len(self.problems())}")
        return "\n".join(lines)


@contextlib.contextmanager
def cluster(config: ZeroLossConfig) -> Iterator[list[int]]:
    """A redis-server and ``config.hubs`` ``uws-py serve --broker ... --history`` processes
    (each waited for until its broker is connected); yields their ports, stops all by PID."""
    redis = RedisServer().start()
    hubs: list[UwsServer] = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("UWS_PY_")}
    pattern = config.topic.split(".")[0] + ".*"
    try:
        for _ in range(config.hubs):
            hubs.append(UwsServer(
                "--broker", redis.url, "--no-access-log", "--log-level", "warning", "--rate-limit", "off",
                "--history", f"{pattern}:{config.history_size}:300",
                "--history-recover-limit", str(config.recover_limit), "--workers", str(config.workers), env=env))
        for hub in hubs:
            # Each /metrics request lands on any worker: several in a row must all say connected.
            wait_until(lambda hub=hub: all(metric_value(hub.port, "uws_broker_connected") == 1
                                           for _ in range(4 * config.workers)),
                       f"broker of every worker of pid {hub.pid} connected", timeout=15.0)
        yield [hub.port for hub in hubs]
    finally:
        for hub in hubs:
            hub.stop()
        redis.cleanup()


def _url(port: int) -> str:
    return f"ws://{HOST}:{port}/realtime"


class _Subscriber:
    """One SDK client and what it records."""

    def __init__(self, port: int, config: ZeroLossConfig) -> None:
        self.result = SubscriberResult()
        self.lost_at: Optional[float] = None
        self.client: RealtimeClient = connect(_url(port), options=config.client_options, on_state=self._on_state)

    def _on_state(self, state: ClientState, error: Optional[BaseException]) -> None:
        if state is ClientState.DISCONNECTED and self.lost_at is None:
            self.lost_at = time.monotonic()

    def on_message(self, publication: Publication) -> None:
        assert isinstance(publication.offset, int), publication
        self.result.offsets.append(publication.offset)
        self.result.numbers.append(publication.data["n"])
        self.result.recovered_flags.append(publication.recovered)
        self.result.max_delay = max(self.result.max_delay, time.monotonic() - publication.data["t"])

    def on_subscribed(self, event: SubscribedEvent) -> None:
        # Called once the recovered publications (and what came live meanwhile) were delivered.
        if event.recovered:
            self.result.recovered += 1
        elif event.gap:
            self.result.not_recovered += 1
            if event.since is not None and event.position is not None:
                # A new epoch renumbers from 1: this run's offsets are all of the first epoch.
                high = event.position.offset if event.position.epoch == event.since.epoch else 1 << 62
                self.result.gap_ranges.append((event.since.offset, high))
        if self.lost_at is not None:
            self.result.max_catch_up = max(self.result.max_catch_up, time.monotonic() - self.lost_at)
            self.lost_at = None


async def run_zero_loss(hub_ports: list[int], config: ZeroLossConfig) -> ZeroLossReport:
    """Runs the scenario against running hubs and returns what happened (asserting nothing)."""
    async with contextlib.AsyncExitStack() as stack:
        proxies = [await stack.enter_async_context(
            ChaosProxy(port, min_life=config.min_life, max_life=config.max_life, seed=config.seed + i))
            for i, port in enumerate(hub_ports)]
        subscribers = [_Subscriber(proxies[i % len(proxies)].port, config) for i in range(config.subscribers)]
        for subscriber in subscribers:
            stack.push_async_callback(subscriber.client.close)
            await subscriber.client.start(wait=False)
        publishers = [await stack.enter_async_context(connect(_url(hub_ports[i % len(hub_ports)]),
                                                              options=config.client_options))
                      for i in range(config.publishers)]
        subscriptions = await asyncio.gather(*(
            s.client.subscribe(config.topic, s.on_message, on_subscribed=s.on_subscribed, timeout=30.0)
            for s in subscribers))

        started = time.monotonic()
        interval = config.duration / config.messages

        async def publish_share(index: int) -> None:
            publisher = publishers[index]
            for n in range(index, config.messages, len(publishers)):
                delay = started + n * interval - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                reply = await publisher.publish(config.topic, {"n": n, "t": time.monotonic()}, ack=True,
                                                timeout=10.0)
                assert reply is not None and reply.get("type") == "PUBLISHED", reply

        await asyncio.gather(*(publish_share(i) for i in range(len(publishers))))
        publish_seconds = time.monotonic() - started

        deadline = time.monotonic() + config.settle_timeout
        while time.monotonic() < deadline:
            if all(len(s.result.offsets) >= config.messages for s in subscribers):
                break
            await asyncio.sleep(0.05)
        # A little longer: a duplicate or a stray delivery after the last one would show too.
        await asyncio.sleep(0.5)
        # Closed before counting, so that no reconnect changes one counter after another was read;
        # the close itself is not one of the disconnects counted.
        closing_connected = [s.client.state is ClientState.CONNECTED for s in subscribers]
        await asyncio.gather(*(s.client.close() for s in subscribers))
        cuts = sum(p.cuts for p in proxies)
        for subscriber, subscription, connected in zip(subscribers, subscriptions, closing_connected):
            result = subscriber.result
            result.disconnects = subscriber.client.stats.disconnects - (1 if connected else 0)
            result.subscribes = subscription.stats.subscribes
            result.recovered_publications = sum(result.recovered_flags)
            result.duplicates_skipped = subscription.stats.duplicates_skipped
    return ZeroLossReport(config, config.messages, publish_seconds, cuts, [s.result for s in subscribers])


def describe(value: Any) -> str:
    """A config as ``key=value`` pairs, for logs."""
    return ", ".join(f"{k}={v}" for k, v in vars(value).items() if k != "client_options")
