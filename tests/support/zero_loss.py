"""The SDK's zero-loss scenario (issue 14 test a), shared by the pytest test and
bench/sdk_zero_loss.py: SDK subscribers reach server processes that share one redis-server
through chaos proxies that cut every connection after 0.2-2 s, while a publisher (connected
straight to the servers, each publish acknowledged) publishes numbered messages on a history
topic. Every subscriber must end with every message exactly once, in offset order.

The publisher does not go through a proxy on purpose: the test is about the subscribers'
recovery, and a publish made without ``ack`` on a connection that is then cut is lost by
design (docs/howto/python-client.md). Every publish here waits for its PUBLISHED, so a refused
or lost publish fails the run instead of showing up as a missing message.

The chaos scenarios (tests/support/chaos.py) run the same traffic while a fault hits the
servers or Redis: there a publish may be refused (ERROR UNAVAILABLE) or get no answer (the
connection dropped or the reply timed out) and is then retried (``retry_publishes``). What
counts as lost is written down in :meth:`ZeroLossReport.problems`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterator, Optional

from uws_py.sdk import (ClientOptions, ClientState, ConnectionLost, Publication, RealtimeClient, ServerError,
                        SubscribedEvent, connect)

from .chaos_proxy import ChaosProxy
from .procutil import HOST, RedisServer, UwsServer, children_of, metric_value, wait_until


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
    # The chaos scenarios: subscribers straight to the servers (no proxy), Redis with an AOF,
    # and publishes that failed retried until acknowledged (each failure counted by kind).
    cut_connections: bool = True
    append_only: bool = False
    redis_debug: bool = False       # DEBUG allowed (from loopback), for DEBUG SLEEP
    retry_publishes: bool = False
    publish_timeout: float = 10.0
    # A JWT every connection of the run presents (with ``serve_args`` that make the hubs
    # require one, e.g. ``("--jwt-secret", SECRET)``); None: no token.
    token: Optional[str] = None
    serve_args: tuple[str, ...] = ()
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
    arrivals: list[float] = field(default_factory=list)  # monotonic time of each delivery, as offsets


@dataclass
class PublishRecord:
    """What the publishers went through. A publish is *acknowledged* once its PUBLISHED came
    back (with its offset); *refused* when the server answered ERROR UNAVAILABLE (Redis
    unreachable: nothing was stored, the publisher waits and retries); *unanswered* when
    the connection dropped or the reply timed out first: it may or may not have been
    stored, and the retry may store the same payload at a second offset (``extra_copies``
    after the run, told apart from a duplicate delivery)."""

    acked: dict[int, int] = field(default_factory=dict)       # offset -> payload number
    acked_at: dict[int, float] = field(default_factory=dict)  # offset -> monotonic ack time
    refused: int = 0
    unanswered: int = 0
    longest_wait: float = 0.0   # the longest time one message took from first try to its ack


@dataclass
class ZeroLossReport:
    """The outcome of a run: per-subscriber results, the chaos done, and problems found."""

    config: ZeroLossConfig
    published: int
    publish_seconds: float
    cuts: int
    subscribers: list[SubscriberResult]
    publishes: PublishRecord = field(default_factory=PublishRecord)
    final_offset: int = 0   # the topic's last offset after the run; ``published`` when 0

    @property
    def top(self) -> int:
        """The last offset the topic holds: every offset 1..top was stored by a publish."""
        return self.final_offset or self.published

    @property
    def extra_copies(self) -> int:
        """Payloads stored at more than one offset: a retried unanswered (or refused, then
        stored anyway) publish that had landed. Not a loss, not a duplicate delivery."""
        return self.top - self.published

    def lost(self) -> int:
        """Acknowledged publishes missing at a subscriber, summed over subscribers."""
        return sum(len(set(self.publishes.acked) - set(r.offsets)) for r in self.subscribers)

    def duplicated(self) -> int:
        """Deliveries of an offset a subscriber had already received, summed over subscribers."""
        return sum(len(r.offsets) - len(set(r.offsets)) for r in self.subscribers)

    def problems(self) -> list[str]:
        """Every way a subscriber missed the guarantee (empty: zero loss). The guarantee: each
        subscriber receives every offset 1..top exactly once, in order, and so every
        acknowledged publish; each message number 0..published-1 was acknowledged. Offsets
        lost in a gap the SDK reported (recovered=false) are told apart from silent loss."""
        found: list[str] = []
        expected = list(range(1, self.top + 1))
        if self.publishes.acked and sorted(set(self.publishes.acked.values())) != list(range(self.published)):
            found.append("the acknowledged payloads are not each of 0..published-1")
        retries = self.publishes.refused + self.publishes.unanswered
        if self.extra_copies > retries:
            # Each extra copy must come from a publisher's retry: more means the server stored
            # one PUBLISH twice (the Redis client re-sending a script after a timeout did).
            found.append(f"{self.extra_copies} payloads stored twice but only {retries} publishes retried")
        for index, result in enumerate(self.subscribers):
            if result.offsets == expected:
                numbers = sorted(set(result.numbers))
                if numbers != list(range(self.published)) or (self.top == self.published
                                                                and len(result.numbers) != self.published):
                    found.append(f"subscriber {index}: the payloads are not each of 0..{self.published - 1} "
                                 + ("once" if self.top == self.published else "at least once"))
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
        through = (f"through chaos proxies (cut after {self.config.min_life}-{self.config.max_life} s): "
                   f"{self.cuts} cuts" if self.config.cut_connections else "straight to the servers")
        lines = [f"zero-loss: {self.published} messages published in {self.publish_seconds:.1f} s on "
                 f"{self.config.hubs} hub(s) x {self.config.workers} worker(s) with redis, "
                 f"{len(self.subscribers)} subscribers {through}"]
        if self.config.retry_publishes:
            lines.append(f"  publishes: {len(self.publishes.acked)} acknowledged, {self.publishes.refused} refused "
                         f"(UNAVAILABLE) and {self.publishes.unanswered} unanswered, all retried; "
                         f"{self.extra_copies} stored twice; topic top offset {self.top}; longest wait for an "
                         f"ack {self.publishes.longest_wait:.3f} s")
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


@dataclass
class Cluster:
    """The processes of a run, for the faults to act on."""

    redis: RedisServer
    hubs: list[UwsServer]

    @property
    def ports(self) -> list[int]:
        return [hub.port for hub in self.hubs]


def listening_sockets(port: int) -> set[str]:
    """The inodes of the IPv4 TCP sockets listening on ``port`` (/proc/net/tcp)."""
    found: set[str] = set()
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                found.add(fields[9])
    return found


def listens(pid: int, inodes: set[str]) -> bool:
    """Whether process ``pid`` holds one of the sockets ``inodes``."""
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for name in names:
        try:
            if os.readlink(f"/proc/{pid}/fd/{name}")[8:-1] in inodes:
                return True
        except OSError:
            pass
    return False


def wait_for_brokers(hub: UwsServer, workers: int, timeout: float = 15.0) -> None:
    """Until every worker of ``hub`` listens and says its broker is connected. Each /metrics
    request lands on any worker that listens: so first every worker must hold a listening
    socket on the port (else the requests all go to the ones that do, and a worker still
    starting would pass unseen), then several requests in a row must all say so."""
    def ready() -> bool:
        pids = children_of(hub.pid) if workers > 1 else [hub.pid]
        if len(pids) != workers:
            return False
        inodes = listening_sockets(hub.port)
        if not all(listens(pid, inodes) for pid in pids):
            return False
        return all(metric_value(hub.port, "uws_broker_connected") == 1 for _ in range(4 * workers))

    wait_until(ready, f"every worker of pid {hub.pid} listening with its broker connected", timeout=timeout)


@contextlib.contextmanager
def cluster(config: ZeroLossConfig) -> Iterator[list[int]]:
    """A redis-server and ``config.hubs`` ``uws-py serve --broker ... --history`` processes
    (each waited for until its broker is connected); yields their ports, stops all by PID."""
    with cluster_processes(config) as running:
        yield running.ports


@contextlib.contextmanager
def cluster_processes(config: ZeroLossConfig) -> Iterator[Cluster]:
    """As :func:`cluster`, yielding the processes themselves."""
    redis = RedisServer(append_only=config.append_only, debug_command=config.redis_debug).start()
    hubs: list[UwsServer] = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("UWS_PY_")}
    pattern = config.topic.split(".")[0] + ".*"
    try:
        for _ in range(config.hubs):
            hubs.append(UwsServer(
                "--broker", redis.url, "--no-access-log", "--log-level", "warning", "--rate-limit", "off",
                "--history", f"{pattern}:{config.history_size}:300",
                "--history-recover-limit", str(config.recover_limit), "--workers", str(config.workers),
                *config.serve_args, env=env))
        for hub in hubs:
            wait_for_brokers(hub, config.workers)
        yield Cluster(redis, hubs)
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
        self.client: RealtimeClient = connect(_url(port), token=config.token, options=config.client_options,
                                              on_state=self._on_state)

    def _on_state(self, state: ClientState, error: Optional[BaseException]) -> None:
        if state is ClientState.DISCONNECTED and self.lost_at is None:
            self.lost_at = time.monotonic()

    def on_message(self, publication: Publication) -> None:
        assert isinstance(publication.offset, int), publication
        self.result.arrivals.append(time.monotonic())
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


async def _publish_until_acknowledged(publisher: RealtimeClient, config: ZeroLossConfig, n: int,
                                     record: PublishRecord) -> None:
    """Publishes message ``n`` until PUBLISHED comes back, counting each failed try by kind
    (see :class:`PublishRecord`); without ``retry_publishes`` a failure fails the run."""
    first = time.monotonic()
    while True:
        try:
            reply = await publisher.publish(config.topic, {"n": n, "t": time.monotonic()}, ack=True,
                                            timeout=config.publish_timeout)
        except ServerError as exc:
            if not config.retry_publishes or exc.code != "UNAVAILABLE":
                raise
            record.refused += 1
        except (ConnectionLost, TimeoutError):
            if not config.retry_publishes:
                raise
            record.unanswered += 1
        else:
            assert reply is not None and reply.get("type") == "PUBLISHED", reply
            now = time.monotonic()
            record.acked[reply["offset"]] = n
            record.acked_at[reply["offset"]] = now
            record.longest_wait = max(record.longest_wait, now - first)
            return
        await asyncio.sleep(0.05)


async def _last_offset(port: int, config: ZeroLossConfig) -> int:
    """The topic's newest offset, read from its history on a fresh connection."""
    async with connect(_url(port), token=config.token, options=config.client_options) as reader:
        page = await reader.history(config.topic, limit=1, reverse=True, timeout=10.0)
        return page.position.offset


async def run_zero_loss(hub_ports: list[int], config: ZeroLossConfig,
                        fault: Optional[Callable[[], Awaitable[Any]]] = None, *,
                        subscriber_ports: Optional[list[int]] = None, record: Optional[PublishRecord] = None,
                        results: Optional[list[SubscriberResult]] = None) -> ZeroLossReport:
    """Runs the scenario against running hubs and returns what happened (asserting nothing).
    ``fault``, when given, runs while the messages are published (the chaos scenarios).
    ``subscriber_ports``: where the subscribers connect instead (e.g. the caller's own proxies;
    not with ``cut_connections``). ``record`` and ``results``, when given, are filled while the
    run goes (``results`` extended with each subscriber's live result), for a caller that
    watches the progress (bench/soak.py)."""
    async with contextlib.AsyncExitStack() as stack:
        if config.cut_connections:
            proxies = [await stack.enter_async_context(
                ChaosProxy(port, min_life=config.min_life, max_life=config.max_life, seed=config.seed + i))
                for i, port in enumerate(hub_ports)]
            ports = [proxy.port for proxy in proxies]
        else:
            proxies, ports = [], subscriber_ports or hub_ports
        subscribers = [_Subscriber(ports[i % len(ports)], config) for i in range(config.subscribers)]
        if results is not None:
            results.extend(s.result for s in subscribers)
        for subscriber in subscribers:
            stack.push_async_callback(subscriber.client.close)
            await subscriber.client.start(wait=False)
        publishers = [await stack.enter_async_context(connect(_url(hub_ports[i % len(hub_ports)]), token=config.token,
                                                              options=config.client_options))
                      for i in range(config.publishers)]
        subscriptions = await asyncio.gather(*(
            s.client.subscribe(config.topic, s.on_message, on_subscribed=s.on_subscribed, timeout=30.0)
            for s in subscribers))

        started = time.monotonic()
        interval = config.duration / config.messages
        record = PublishRecord() if record is None else record

        async def publish_share(index: int) -> None:
            publisher = publishers[index]
            for n in range(index, config.messages, len(publishers)):
                delay = started + n * interval - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await _publish_until_acknowledged(publisher, config, n, record)

        await asyncio.gather(*(publish_share(i) for i in range(len(publishers))),
                             *([fault()] if fault is not None else []))
        publish_seconds = time.monotonic() - started
        final_offset = await _last_offset(hub_ports[0], config) if config.retry_publishes else 0

        deadline = time.monotonic() + config.settle_timeout
        while time.monotonic() < deadline:
            if all(len(s.result.offsets) >= (final_offset or config.messages) for s in subscribers):
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
    return ZeroLossReport(config, config.messages, publish_seconds, cuts, [s.result for s in subscribers],
                          record, final_offset)


def describe(value: Any) -> str:
    """A config as ``key=value`` pairs, for logs."""
    return ", ".join(f"{k}={v}" for k, v in vars(value).items() if k != "client_options")
