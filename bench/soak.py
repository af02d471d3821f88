"""Soak (issue 19 item 4): the full stack for a long run with traffic, churn, slow consumers
and a chaos event every few minutes, checked for loss, leaks and unexplained log lines.

usage: python bench/soak.py [--duration 1800] [--quick] [--rate 20] [--subscribers 6]
                            [--churners 8] [--slow 3] [--chaos-every 180] [--sample-every 10]
                            [--outage 3] [--out bench/results] [--no-write]

Run from the repository root with the package importable (PYTHONPATH=python when the native
module was copied there, or an installed uws-py).

The stack: redis-server with an AOF (fsync always) and ``uws-py serve --workers 2 --broker
redis://... --jwt-secret ... --history soak.*:5000:300``; every connection presents a JWT at
the upgrade. The load, for the whole run:

- the zero-loss traffic of tests/support/zero_loss.py: two publishers send numbered,
  acknowledged publishes (retried when refused or unanswered) on the history topic
  ``soak.stream`` at ``--rate`` per second; ``--subscribers`` SDK clients (recovery on) reach
  the hub through a chaos proxy (tests/support/chaos_proxy.py) and must each receive every
  offset exactly once, in order;
- churners: SDK clients that connect, subscribe to a live topic, publish two acknowledged
  messages, wait for them and leave, over and over;
- a bulk publisher sending 11 KiB messages on ``bulk.feed`` (no history) at 25/s, and slow
  consumers (4 KiB receive buffer, never read) subscribed to it: the server closes each with
  1008 once it is 1 MiB behind; they come back after 30-45 s;
- a chaos event every ``--chaos-every`` s, rotating ``kill-worker``, ``rolling-restart``,
  ``redis-restart``, ``redis-pause``, ``network-cuts``, ``redis-sleep`` (tests/support/chaos.py;
  ``network-cuts`` here: the proxy's open connections hang (the SDK's ping timeout finds
  out) and every new one is cut after 0.2-2 s, for ``--cut-window`` s).

Every ``--sample-every`` s a row goes to bench/results/soak-<stamp>.csv: RSS and open fds
of the supervisor, each worker (and its sockets) and redis-server, connections per worker
(/health), and the message counters; a PNG plots RSS per role and fds over time with the
chaos events marked, and a Markdown summary says published / delivered / lost / duplicated,
the chaos events and RSS first / plateau / max. Every server log line at WARNING or above is
classified: explained by a chaos event (it happened within the event and is what that fault
makes the server say), by a known cause (a slow consumer closed), or "unexplained".

Exit status 1 on any lost or duplicated message, an unexplained log line, or a chaos event
that failed; 0 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import csv
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import jwt  # noqa: E402

from uws_py.sdk import ClientOptions, ConnectionLost, ServerError, connect  # noqa: E402

from tests.support import wsclient  # noqa: E402
from tests.support.chaos import FaultTimes, make_fault  # noqa: E402
from tests.support.chaos_proxy import ChaosProxy  # noqa: E402
from tests.support.procutil import HOST, children_of, health  # noqa: E402
from tests.support.zero_loss import (Cluster, PublishRecord, SubscriberResult, ZeroLossConfig,  # noqa: E402
                                     ZeroLossReport, cluster_processes, run_zero_loss)

SECRET = "soak-secret-soak-secret-soak-secret-soak"
ROTATION = ("kill-worker", "rolling-restart", "redis-restart", "redis-pause", "network-cuts", "redis-sleep")
TOPIC = "soak.stream"
BULK_TOPIC = "bulk.feed"
LONG_LIFE = 1e9   # a proxied connection outside a network-cuts event is never cut
PLOT_PYTHONS = [ROOT / "bench" / ".baselines" / "venv" / "bin" / "python", Path(sys.executable)]
ROLES = ("supervisor", "worker_a", "worker_b", "redis")


def make_token(sub: str, lifetime: float = 6 * 3600) -> str:
    """An HS256 JWT for ``sub`` valid for ``lifetime`` seconds (longer than any run)."""
    return jwt.encode({"sub": sub, "exp": int(time.time() + lifetime)}, SECRET, algorithm="HS256")


def url(port: int) -> str:
    return f"ws://{HOST}:{port}/realtime"


# -- the record of a run -------------------------------------------------------------------------


@dataclass
class ChaosEvent:
    """One chaos event: its wall-clock start and end (for the log lines) and what it did."""

    name: str
    started: float
    ended: float = 0.0
    seconds: float = 0.0       # injection to restoration, as the fault measured it
    notes: list[str] = field(default_factory=list)
    error: str = ""


@dataclass
class Load:
    """The counters of the load besides the zero-loss traffic (written from one event loop and
    the slow-consumer threads; read by the sampler)."""

    churn_cycles: int = 0
    churn_errors: int = 0
    churn_errors_outside_chaos: int = 0
    churn_open: int = 0
    bulk_published: int = 0
    bulk_errors: int = 0
    slow_connects: int = 0
    slow_closed_1008: int = 0      # the server's close frame (1008) read
    slow_closed_tcp: int = 0       # the server ended TCP before its close frame was read
    slow_other_end: int = 0        # still open after the hold: not over the limit (yet)
    slow_errors: int = 0
    slow_open: int = 0
    last_errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, **deltas: int) -> None:
        with self.lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    def note_error(self, where: str, error: BaseException) -> None:
        with self.lock:
            self.last_errors = (self.last_errors + [f"{where}: {type(error).__name__}: {error}"])[-20:]


class Soak:
    """The state shared by the tasks of one run."""

    def __init__(self, args: argparse.Namespace, running: Cluster, config: ZeroLossConfig) -> None:
        self.args = args
        self.running = running
        self.config = config
        self.hub = running.hubs[0]
        self.record = PublishRecord()
        self.results: list[SubscriberResult] = []
        self.load = Load()
        self.events: list[ChaosEvent] = []
        self.proxies: list[ChaosProxy] = []
        self.started = time.monotonic()
        self.started_wall = time.time()
        self.end = self.started + args.duration
        self.stop = threading.Event()
        self.rows: list[dict[str, Any]] = []
        self.csv_path: Optional[Path] = None   # rows appended as they come (a crash keeps them)
        self.sampled_events = 0

    def in_chaos(self, grace: float = 15.0) -> bool:
        """Whether a chaos event is on now or ended less than ``grace`` s ago."""
        now = time.time()
        return any(e.started <= now and (not e.ended or now <= e.ended + grace) for e in self.events)


# -- chaos -----------------------------------------------------------------------------------------


async def network_cuts(soak: Soak, times: FaultTimes) -> None:
    """The proxy's open connections hang; new ones are cut after 0.2-2 s; for --cut-window s."""
    times.injected = time.monotonic()
    hung = 0
    for proxy in soak.proxies:
        proxy.min_life, proxy.max_life = 0.2, 2.0
        hung += proxy.hang()
    times.notes.append(f"{hung} proxied connections hung")
    await asyncio.sleep(soak.args.cut_window)
    for proxy in soak.proxies:
        proxy.min_life = proxy.max_life = LONG_LIFE
    times.restored = time.monotonic()


async def chaos_loop(soak: Soak) -> None:
    """A chaos event every --chaos-every s, rotating ROTATION, while there is time for the
    event and a recovery before the publishing ends."""
    every = soak.args.chaos_every
    index = 0
    while True:
        at = soak.started + (index + 1) * every
        if at + min(every / 2, 60.0) > soak.end:
            return
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        name = ROTATION[index % len(ROTATION)]
        index += 1
        times = FaultTimes(name)
        event = ChaosEvent(name, started=time.time())
        soak.events.append(event)
        print(f"[{time.monotonic() - soak.started:7.1f} s] chaos: {name}", flush=True)
        try:
            if name == "network-cuts":
                await network_cuts(soak, times)
            else:
                body = make_fault(name, soak.running, soak.config, times, 0.0, soak.args.outage)
                assert body is not None
                await body()
        except Exception as exc:  # a fault that did not complete fails the run, the soak goes on
            event.error = f"{type(exc).__name__}: {exc}"
            print(f"  chaos {name} failed: {event.error}", flush=True)
        event.ended = time.time()
        event.seconds = round(times.restored - times.injected, 3) if times.restored else 0.0
        event.notes = times.notes
        print(f"  {name} done in {event.seconds} s {times.notes}", flush=True)


# -- churn, bulk, slow consumers -------------------------------------------------------------------


CHURN_OPTIONS = ClientOptions(min_delay=0.1, max_delay=1.0, open_timeout=3.0, request_timeout=5.0,
                              ping_interval=5.0, ping_timeout=3.0)


async def churner(soak: Soak, index: int) -> None:
    """Connect, subscribe to a live topic, publish two acknowledged messages, receive them,
    leave; again until the publishing ends."""
    rng = random.Random(index)
    token = make_token(f"churn-{index}")
    port = soak.hub.port
    while time.monotonic() < soak.end:
        topic = f"live.churn.{index % 4}"
        got: list[Any] = []
        soak.load.add(churn_open=1)
        try:
            async def cycle() -> None:
                async with connect(url(port), token=token, options=CHURN_OPTIONS) as client:
                    await client.subscribe(topic, lambda publication: got.append(publication.data), timeout=5.0)
                    for n in range(2):
                        await client.publish(topic, {"from": index, "n": n}, ack=True, echo=True, timeout=5.0)
                    deadline = time.monotonic() + 5.0
                    while sum(1 for d in got if isinstance(d, dict) and d.get("from") == index) < 2:
                        if time.monotonic() > deadline:
                            raise TimeoutError("own publications not received within 5 s")
                        await asyncio.sleep(0.02)
            await asyncio.wait_for(cycle(), 20.0)
            soak.load.add(churn_cycles=1)
        except (ConnectionLost, ServerError, TimeoutError, OSError, asyncio.TimeoutError) as exc:
            soak.load.add(churn_errors=1, churn_errors_outside_chaos=0 if soak.in_chaos() else 1)
            soak.load.note_error(f"churner {index}", exc)
            await asyncio.sleep(1.0)
        finally:
            soak.load.add(churn_open=-1)
        await asyncio.sleep(rng.uniform(0.2, 1.0))


async def bulk_publisher(soak: Soak) -> None:
    """About 11 KiB messages (random bytes in base64: permessage-deflate cannot shrink them
    much) on BULK_TOPIC at 25/s, unacknowledged: what the slow consumers fall behind on."""
    async with connect(url(soak.hub.port), token=make_token("bulk"), options=CHURN_OPTIONS) as client:
        n = 0
        while time.monotonic() < soak.end:
            try:
                await client.publish(BULK_TOPIC, {"n": n, "pad": base64.b64encode(os.urandom(8192)).decode()})
                soak.load.add(bulk_published=1)
            except (ConnectionLost, ServerError, TimeoutError, OSError) as exc:
                soak.load.add(bulk_errors=1)
                soak.load.note_error("bulk", exc)
                await asyncio.sleep(0.5)
            n += 1
            await asyncio.sleep(0.04)


def slow_consumer(soak: Soak, index: int) -> None:
    """A subscriber of BULK_TOPIC with a 4 KiB receive buffer that never reads; after 30-45 s
    it reads up to the server's close (1008 at the backpressure limit: the kernel's send
    buffer, up to tcp_wmem's maximum, fills first, then the server's 1 MiB) and comes back."""
    rng = random.Random(1000 + index)
    headers = [("Authorization", f"Bearer {make_token(f'slow-{index}')}")]
    while not soak.stop.is_set() and time.monotonic() < soak.end:
        client = None
        try:
            client = wsclient.connect(HOST, soak.hub.port, "/realtime", headers=headers, recv_buffer_size=4096)
            soak.load.add(slow_connects=1, slow_open=1)
            connected = client.recv_message(5.0)
            if b'"CONNECTED"' not in connected.payload:
                raise RuntimeError(f"expected CONNECTED, got {connected.payload[:100]!r}")
            client.send_text(json.dumps({"type": "SUBSCRIBE", "topic": BULK_TOPIC, "id": 1}))
            soak.stop.wait(rng.uniform(30.0, 45.0) if not soak.args.quick else rng.uniform(6.0, 9.0))
            try:
                # Reading through what the kernel holds (several MiB: the server's send buffer
                # grows to tcp_wmem's maximum before its own 1 MiB limit counts) takes a while
                # through a 4 KiB window.
                code, _ = client.expect_close(20.0)
            except AssertionError:  # "server closed TCP without sending a close frame"
                code = "tcp"
            except (TimeoutError, wsclient.ConnectionClosed):
                code = None
            if code == 1008:
                soak.load.add(slow_closed_1008=1)
            elif code == "tcp":
                soak.load.add(slow_closed_tcp=1)
            else:
                soak.load.add(slow_other_end=1)
        except Exception as exc:  # counted; the slow consumer comes back
            soak.load.add(slow_errors=1)
            soak.load.note_error(f"slow {index}", exc)
            soak.stop.wait(1.0)
        finally:
            if client is not None:
                client.disconnect()
                soak.load.add(slow_open=-1)


# -- sampling ------------------------------------------------------------------------------------


def proc_rss_kib(pid: Optional[int]) -> Optional[int]:
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def proc_fds(pid: Optional[int]) -> tuple[Optional[int], Optional[int]]:
    """(open descriptors, of which sockets) of ``pid``; (None, None) once it is gone."""
    if not pid:
        return None, None
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None, None
    sockets = 0
    for name in names:
        try:
            if os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                sockets += 1
        except OSError:
            pass
    return len(names), sockets


def tcp_remote_ports() -> dict[str, int]:
    """Socket inode -> remote port of every IPv4 TCP socket (/proc/net/tcp)."""
    found: dict[str, int] = {}
    try:
        with open("/proc/net/tcp") as table:
            next(table)
            for line in table:
                fields = line.split()
                found[fields[9]] = int(fields[2].rsplit(":", 1)[1], 16)
    except OSError:
        pass
    return found


def redis_sockets(pid: Optional[int], redis_port: int, remote_ports: dict[str, int]) -> Optional[int]:
    """How many of ``pid``'s sockets are connected to Redis."""
    if not pid:
        return None
    count = 0
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:[") and remote_ports.get(target[8:-1]) == redis_port:
            count += 1
    return count


def worker_connections(port: int, workers: list[int]) -> dict[int, int]:
    """Open connections per worker pid, from /health (each request lands on either worker)."""
    found: dict[int, int] = {}
    for _ in range(8 * max(1, len(workers))):
        try:
            answer = health(port)
        except Exception:  # a worker restarting: this sample has fewer
            continue
        found.setdefault(answer["pid"], answer["connections"])
        if set(workers) <= set(found):
            break
    return found


def sample(soak: Soak, phase: str) -> dict[str, Any]:
    """One CSV row."""
    now = time.monotonic()
    row: dict[str, Any] = {"seconds": round(now - soak.started, 1), "phase": phase}
    events = soak.events[soak.sampled_events:]
    soak.sampled_events = len(soak.events)
    # The events that started since the last sample, each as name@seconds (its own start).
    row["chaos"] = "+".join(f"{e.name}@{e.started - soak.started_wall:.1f}" for e in events)
    workers = sorted(children_of(soak.hub.pid))
    redis_process = soak.running.redis.process
    pids = {"supervisor": soak.hub.pid, "worker_a": workers[0] if workers else None,
            "worker_b": workers[1] if len(workers) > 1 else None,
            "redis": redis_process.pid if redis_process is not None else None}
    connections = worker_connections(soak.hub.port, workers)
    remote_ports = tcp_remote_ports()
    for role in ROLES:
        pid = pids[role]
        fds, sockets = proc_fds(pid)
        row[f"{role}_pid"] = pid or ""
        row[f"{role}_rss_kib"] = proc_rss_kib(pid) or ""
        row[f"{role}_fds"] = fds if fds is not None else ""
        if role.startswith("worker"):
            row[f"{role}_sockets"] = sockets if sockets is not None else ""
            row[f"{role}_connections"] = connections.get(pid, "") if pid else ""
            redis = redis_sockets(pid, soak.running.redis.port, remote_ports)
            row[f"{role}_redis"] = redis if redis is not None else ""
    row["published"] = len(soak.record.acked)
    row["delivered"] = sum(len(r.offsets) for r in soak.results)
    row["refused"] = soak.record.refused
    row["unanswered"] = soak.record.unanswered
    with soak.load.lock:
        for name in ("churn_cycles", "churn_errors", "bulk_published", "slow_closed_1008", "slow_closed_tcp",
                     "slow_errors"):
            row[name] = getattr(soak.load, name)
        row["client_connections"] = (len(soak.results) + 2 + 1 + soak.load.churn_open + soak.load.slow_open
                                     if phase == "load" else 0)
    return row


COLUMNS = (["seconds", "phase", "chaos"]
           + [f"{role}_{what}" for role in ROLES for what in
              (("pid", "rss_kib", "fds", "sockets", "connections", "redis") if role.startswith("worker") else ("pid", "rss_kib", "fds"))]
           + ["client_connections", "published", "delivered", "refused", "unanswered", "churn_cycles", "churn_errors",
              "bulk_published", "slow_closed_1008", "slow_closed_tcp", "slow_errors"])


def add_row(soak: Soak, row: dict[str, Any]) -> None:
    soak.rows.append(row)
    if soak.csv_path is not None:
        new = not soak.csv_path.exists()
        with open(soak.csv_path, "a", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=COLUMNS, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)


def sampler(soak: Soak) -> None:
    """A row every --sample-every s until told to stop (a thread: /proc and /health are blocking)."""
    while not soak.stop.wait(soak.args.sample_every):
        try:
            row = sample(soak, "load")
        except Exception as exc:  # a sample lost is written down, the soak goes on
            print(f"sample failed: {type(exc).__name__}: {exc}", flush=True)
            continue
        add_row(soak, row)
        if len(soak.rows) % max(1, int(60 / soak.args.sample_every)) == 0:
            print(f"[{row['seconds']:7.1f} s] published {row['published']} delivered {row['delivered']} "
                  f"workers {row['worker_a_rss_kib']}/{row['worker_b_rss_kib']} KiB "
                  f"fds {row['worker_a_fds']}/{row['worker_b_fds']} churn {row['churn_cycles']} "
                  f"slow-1008 {row['slow_closed_1008']}", flush=True)


# -- the server log ------------------------------------------------------------------------------

LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) (DEBUG|INFO|WARNING|ERROR|CRITICAL) \[(\d+)\] (\S+): (.*)$")

# What each fault makes the server say (within the event, or shortly after it: reconnects and
# timeouts follow an outage). Filled in from what the faults were seen to log; a line that
# matches none of them, and no known cause, is "unexplained".
FAULT_LINES: dict[str, list[str]] = {
    "kill-worker": [r"worker .*(signal 9|SIGKILL|killed|exited)", r"restart"],
    "rolling-restart": [r"rolling restart", r"worker"],
    "redis-restart": [r"broker", r"redis", r"[Cc]onnection (refused|reset|lost|closed)", r"history"],
    "redis-pause": [r"broker", r"redis", r"timed? ?out", r"history"],
    "redis-sleep": [r"broker", r"redis", r"timed? ?out", r"history"],
    "network-cuts": [],
}
# Causes that are not a fault: the line is explained whenever it happens.
KNOWN_CAUSES: list[tuple[str, str]] = [
    ("slow consumer closed at the backpressure limit", r"backpressure"),
]
EVENT_GRACE = 30.0  # s after an event ends in which its lines still count as its own


@dataclass
class LogRecord:
    when: float
    level: str
    pid: int
    logger: str
    message: str
    explained_by: str = ""


def parse_log(text: str) -> list[LogRecord]:
    """The WARNING+ records of the server's stderr (continuation lines, e.g. a traceback,
    belong to the record before them)."""
    records: list[LogRecord] = []
    current: Optional[LogRecord] = None
    for line in text.splitlines():
        match = LOG_LINE.match(line)
        if match:
            current = None
            if match.group(3) in ("WARNING", "ERROR", "CRITICAL"):
                when = time.mktime(time.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")) + int(match.group(2)) / 1000
                current = LogRecord(when, match.group(3), int(match.group(4)), match.group(5), match.group(6))
                records.append(current)
        elif current is not None:
            current.message += "\n" + line
        elif line.strip() and not records:
            # Something before any record (an unformatted print or crash): a record of its own.
            records.append(LogRecord(0.0, "UNFORMATTED", 0, "-", line))
    return records


def classify(records: list[LogRecord], events: list[ChaosEvent]) -> None:
    for record in records:
        text = f"{record.logger}: {record.message}"
        for cause, pattern in KNOWN_CAUSES:
            if re.search(pattern, text):
                record.explained_by = cause
                break
        else:
            for event in events:
                if (event.started - 1.0 <= record.when <= (event.ended or time.time()) + EVENT_GRACE
                        and any(re.search(p, text) for p in FAULT_LINES.get(event.name, []))):
                    record.explained_by = f"chaos {event.name} at {time.strftime('%H:%M:%S', time.gmtime(event.started))}"
                    break
        if not record.explained_by:
            record.explained_by = "unexplained"


# -- the run ---------------------------------------------------------------------------------------


async def run_load(soak: Soak) -> ZeroLossReport:
    proxies = [ChaosProxy(port, min_life=LONG_LIFE, max_life=LONG_LIFE, seed=19 + i)
               for i, port in enumerate(soak.running.ports)]
    for proxy in proxies:
        await proxy.start()
    soak.proxies = proxies
    threads = [threading.Thread(target=sampler, args=(soak,), name="sampler", daemon=True)]
    threads += [threading.Thread(target=slow_consumer, args=(soak, i), name=f"slow-{i}", daemon=True)
                for i in range(soak.args.slow)]
    for thread in threads:
        thread.start()

    async def side_load() -> None:
        await asyncio.gather(chaos_loop(soak), bulk_publisher(soak),
                             *(churner(soak, i) for i in range(soak.args.churners)))

    try:
        report = await run_zero_loss(soak.running.ports, soak.config, fault=side_load,
                                     subscriber_ports=[p.port for p in proxies], record=soak.record,
                                     results=soak.results)
    finally:
        soak.stop.set()
        for thread in threads:
            thread.join(15.0)
        for proxy in proxies:
            await proxy.stop()
    return report


def summarize(values: list[int]) -> dict[str, Any]:
    """first / plateau (median of the last third) / max of one series."""
    if not values:
        return {"first": "", "plateau": "", "max": ""}
    tail = values[len(values) * 2 // 3:]
    return {"first": values[0], "plateau": int(statistics.median(tail)), "max": max(values)}


def series(rows: list[dict[str, Any]], column: str) -> list[int]:
    return [int(r[column]) for r in rows if r.get(column) not in ("", None)]


def write_markdown(path: Path, soak: Soak, report: ZeroLossReport, records: list[LogRecord],
                   problems: list[str], after: dict[str, Any], command: str) -> str:
    rows = [r for r in soak.rows if r["phase"] == "load"]
    delivered = sum(len(r.offsets) for r in report.subscribers)
    lines = [f"# Soak {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(soak.started_wall))}", "",
             f"`{command}` — {soak.args.duration:.0f} s, {platform.machine()}, {platform.system()} "
             f"{platform.release()}, python {platform.python_version()}", "",
             "| published | delivered | lost | duplicated | refused | unanswered | stored twice | chaos events | "
             "failed events | churn cycles | slow consumers closed | unexplained log lines |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|",
             f"| {len(report.publishes.acked)} | {delivered} | {report.lost()} | {report.duplicated()} | "
             f"{report.publishes.refused} | {report.publishes.unanswered} | {report.extra_copies} | {len(soak.events)} | "
             f"{sum(1 for e in soak.events if e.error)} | {soak.load.churn_cycles} | "
             f"{soak.load.slow_closed_1008 + soak.load.slow_closed_tcp} | "
             f"{sum(1 for r in records if r.explained_by == 'unexplained')} |", "",
             f"{len(report.subscribers)} SDK subscribers (recovery on) through a proxy, each must hold every offset "
             f"1..{report.top} once and in order; {sum(r.disconnects for r in report.subscribers)} disconnects, "
             f"{sum(r.recovered for r in report.subscribers)} recovered resubscribes, "
             f"{sum(r.recovered_publications for r in report.subscribers)} recovered publications, max catch-up "
             f"{max((r.max_catch_up for r in report.subscribers), default=0.0):.2f} s. Churn errors: "
             f"{soak.load.churn_errors} ({soak.load.churn_errors_outside_chaos} outside a chaos event and its 15 s "
             f"after); bulk publishes {soak.load.bulk_published}; slow-consumer connects {soak.load.slow_connects}, "
             f"closed by the server with 1008 {soak.load.slow_closed_1008}, TCP ended by the server before "
             f"the close frame was read {soak.load.slow_closed_tcp}, still open after the hold "
             f"{soak.load.slow_other_end}, errors {soak.load.slow_errors}.", "",
             "## Memory and descriptors", "",
             "| role | RSS first (KiB) | RSS plateau (KiB) | RSS max (KiB) | fds first | fds last (load) | fds after |",
             "|---|---|---|---|---|---|---|"]
    for role in ROLES:
        rss = summarize(series(rows, f"{role}_rss_kib"))
        fds = series(rows, f"{role}_fds")
        lines.append(f"| {role} | {rss['first']} | {rss['plateau']} | {rss['max']} | {fds[0] if fds else ''} | "
                     f"{fds[-1] if fds else ''} | {after.get(f'{role}_fds', '')} |")
    lines += ["", "| worker | sockets first | sockets max | sockets after | of which to Redis: first / max / after | "
              "connections after |", "|---|---|---|---|---|---|"]
    for role in ("worker_a", "worker_b"):
        sockets, redis = series(rows, f"{role}_sockets"), series(rows, f"{role}_redis")
        lines.append(f"| {role} | {sockets[0] if sockets else ''} | {max(sockets, default='')} | "
                     f"{after.get(f'{role}_sockets', '')} | {redis[0] if redis else ''} / {max(redis, default='')} / "
                     f"{after.get(f'{role}_redis', '')} | {after.get(f'{role}_connections', '')} |")
    lines += ["", "Workers are named by pid order at each sample (a restarted worker is a new process: its RSS "
              "starts again). Plateau: median of the last third of the samples. After: 10 s (quick: 2 s) "
              "after every client left.", "",
              "## Chaos events", "", "| # | fault | at (s) | fault seconds | notes | error |", "|---|---|---|---|---|---|"]
    for i, event in enumerate(soak.events, 1):
        lines.append(f"| {i} | {event.name} | {event.started - soak.started_wall:.0f} | {event.seconds} | "
                     f"{'; '.join(event.notes)} | {event.error} |")
    lines += ["", "## Server log lines at WARNING and above", ""]
    if records:
        counts: dict[tuple[str, str], int] = {}
        for record in records:
            key = (record.explained_by, re.sub(r"\d+", "N", f"{record.level} {record.logger}: "
                                               f"{record.message.splitlines()[0]}")[:160])
            counts[key] = counts.get(key, 0) + 1
        lines += ["| explained by | line (digits as N) | count |", "|---|---|---|"]
        for (cause, text), count in sorted(counts.items()):
            lines.append(f"| {cause} | `{text.replace('|', '/')}` | {count} |")
    else:
        lines.append("None.")
    lines += ["", "## Problems", ""] + ([f"- {p}" for p in problems] or ["None."])
    if soak.load.last_errors:
        lines += ["", "Last client errors (of the churners, bulk publisher, slow consumers):", ""]
        lines += [f"- {e}" for e in soak.load.last_errors[-10:]]
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


PLOT_SCRIPT = r"""
import csv, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["phase"] == "load"]
t = [float(r["seconds"]) for r in rows]
def col(name, scale=1.0):
    return [float(r[name]) * scale if r[name] else float("nan") for r in rows]
fig, axes = plt.subplots(3, 1, figsize=(11, 10), sharex=True)
for role in ("supervisor", "worker_a", "worker_b", "redis"):
    axes[0].plot(t, col(role + "_rss_kib", 1 / 1024), marker=".", label=role)
    axes[1].plot(t, col(role + "_fds"), marker=".", label=role)
axes[0].set_ylabel("RSS (MiB)"); axes[0].set_ylim(bottom=0); axes[0].legend(loc="upper left")
axes[1].set_ylabel("open fds"); axes[1].legend(loc="upper left")
axes[2].plot(t, col("client_connections"), label="client connections")
axes[2].plot(t, col("worker_a_connections"), label="worker_a connections")
axes[2].plot(t, col("worker_b_connections"), label="worker_b connections")
axes[2].set_ylabel("connections"); axes[2].set_xlabel("seconds"); axes[2].legend(loc="upper left")
for r in rows:
    for event in filter(None, r["chaos"].split("+")):
        name, _, at = event.partition("@")
        at = at or r["seconds"]  # a CSV of before the start times were written
        for ax in axes:
            ax.axvline(float(at), color="red", alpha=0.4, linestyle="--")
        axes[0].annotate(name, (float(at), 0), rotation=90, fontsize=7, va="bottom", color="red")
fig.suptitle(sys.argv[3])
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=100)
"""


def plot(csv_path: Path, png_path: Path, title: str) -> bool:
    for python in PLOT_PYTHONS:
        if not python.exists():
            continue
        result = subprocess.run([str(python), "-c", PLOT_SCRIPT, str(csv_path), str(png_path), title],
                                capture_output=True, text=True, timeout=120)
        if result.returncode == 0:
            return True
    print("no Python with matplotlib found: CSV only (pip install matplotlib)", file=sys.stderr)
    return False


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=1800.0, help="seconds of load (default 1800)")
    parser.add_argument("--quick", action="store_true",
                        help="a short run: 24 s, a chaos event every 6 s (kill-worker, rolling-restart, "
                             "redis-restart), smaller counts (for the test)")
    parser.add_argument("--rate", type=float, default=20.0, help="acknowledged publishes per second on the history topic")
    parser.add_argument("--subscribers", type=int, default=6)
    parser.add_argument("--churners", type=int, default=8)
    parser.add_argument("--slow", type=int, default=3, help="slow consumers")
    parser.add_argument("--chaos-every", type=float, default=180.0, help="seconds between chaos events")
    parser.add_argument("--cut-window", type=float, default=20.0, help="seconds a network-cuts event lasts")
    parser.add_argument("--outage", type=float, default=3.0, help="seconds Redis is down, paused or asleep")
    parser.add_argument("--sample-every", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="where the results go")
    parser.add_argument("--no-write", action="store_true", help="write no result files")
    args = parser.parse_args(argv)
    if args.quick:
        explicit = set(a.split("=")[0] for a in (argv if argv is not None else sys.argv[1:]))
        for name, value in (("duration", 24.0), ("chaos_every", 6.0), ("cut_window", 3.0), ("sample_every", 2.0),
                            ("churners", 3), ("slow", 1), ("subscribers", 3), ("outage", 2.0)):
            if f"--{name.replace('_', '-')}" not in explicit:
                setattr(args, name, value)
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    command = "python bench/soak.py " + " ".join(argv if argv is not None else sys.argv[1:])
    config = ZeroLossConfig(
        duration=args.duration, messages=max(10, int(args.duration * args.rate)), subscribers=args.subscribers,
        hubs=1, workers=2, publishers=2, seed=19, history_size=5000, recover_limit=5000,
        settle_timeout=30.0, topic=TOPIC, cut_connections=False, append_only=True, redis_debug=True,
        retry_publishes=True, publish_timeout=5.0, token=make_token("soak-zero-loss"),
        serve_args=("--jwt-secret", SECRET))
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    print(f"soak {stamp}: {args.duration:.0f} s, {config.messages} messages at {args.rate}/s, "
          f"{args.subscribers} subscribers, {args.churners} churners, {args.slow} slow, chaos every "
          f"{args.chaos_every} s", flush=True)
    with cluster_processes(config) as running:
        soak = Soak(args, running, config)
        if not args.no_write:
            args.out.mkdir(parents=True, exist_ok=True)
            soak.csv_path = args.out / f"soak-{stamp}.csv"
        add_row(soak, sample(soak, "load"))
        report = asyncio.run(run_load(soak))
        # Every client has left: what the processes hold once idle.
        time.sleep(2.0 if args.quick else 10.0)
        after = sample(soak, "after")
        add_row(soak, after)
        records = parse_log(soak.hub.stderr_text())
    classify(records, soak.events)

    problems = list(report.problems())
    problems += [f"chaos {e.name} failed: {e.error}" for e in soak.events if e.error]
    unexplained = [r for r in records if r.explained_by == "unexplained"]
    problems += [f"unexplained log line: {r.level} {r.logger}: {r.message.splitlines()[0][:200]}" for r in unexplained]
    print(report.summary())
    for event in soak.events:
        print(f"  chaos {event.name} at {event.started - soak.started_wall:.0f} s: {event.seconds} s "
              f"{event.notes} {event.error}")
    for record in records:
        print(f"  log {record.level} {record.logger}: {record.message.splitlines()[0][:160]} -> {record.explained_by}")
    print(f"lost {report.lost()}, duplicated {report.duplicated()}, chaos events {len(soak.events)}, "
          f"unexplained log lines {len(unexplained)}, problems {len(problems)}")
    for problem in problems:
        print(f"PROBLEM: {problem}")

    if not args.no_write:
        args.out.mkdir(parents=True, exist_ok=True)
        base = args.out / f"soak-{stamp}"
        plot(Path(f"{base}.csv"), Path(f"{base}.png"), f"soak {stamp}: RSS and fds per role, chaos events in red")
        write_markdown(Path(f"{base}.md"), soak, report, records, problems, after, command)
        # The raw WARNING+ records, to check the classification by eye.
        Path(f"{base}.log").write_text("".join(
            f"{time.strftime('%H:%M:%S', time.gmtime(r.when))} {r.level} [{r.pid}] {r.logger}: {r.message}"
            f" -> {r.explained_by}\n" for r in records))
        print(f"wrote {base}.csv, .png, .md, .log")
    return 1 if problems or report.lost() or report.duplicated() else 0


if __name__ == "__main__":
    sys.exit(main())
