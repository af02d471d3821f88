"""Connection storm (issue 19 item 2): many clients upgrading within seconds against
`uws-py serve --workers N` while established clients keep a request/reply (PING/PONG) stream.

Three kinds of process, all on loopback:

- the hub (`uws-py serve`, JWT auth, the connection limits under test);
- one *established* process: ``--established`` clients (from 127.0.0.2) each sending PING,
  waiting for its PONG, pausing ``--think`` s, again; it records every round trip with the
  wall time it was sent, and every connection it lost;
- ``--processes`` *storm* processes: each opens its share of ``--clients`` connections at an
  even pace over ``--storm-seconds``, from its own 127.0.0.x source addresses, each attempt
  with a deadline (``--attempt-deadline``): the outcome is the HTTP status (101, 503, 429,
  ...), ``timeout``, or the socket error. Upgraded connections are held until the run ends.

The established process is this module run as a script (``python -m tests.support.storm``),
the storm processes bench/loadgen/storm.cpp (compiled by :func:`build_generator`);
they talk to the orchestrator (:func:`run_storm`) by lines on stdin/stdout: each prints
``ready`` (or ``resolved {json}``) and, when ``stop`` comes on stdin, its result as one JSON
line. Every wait has a deadline; processes are stopped by PID.

The round trips are split by the time they were sent: *before* the storm's first attempt,
*during* (until every storm attempt had its outcome), *after*.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent.parent
HOST = "127.0.0.1"
SECRET = "storm-bench-secret-of-at-least-32-bytes"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ESTABLISHED_SOURCE = "127.0.0.2"
STATUS = re.compile(rb"^HTTP/1\.[01] (\d{3})")
# A PONG that has not come this long after its PING counts as lost (and the client moves on).
REPLY_DEADLINE = 5.0


def make_token(subject: str, ttl: float = 3600.0) -> str:
    """An HS256 JWT for SECRET."""
    import jwt

    return jwt.encode({"sub": subject, "exp": int(time.time() + ttl)}, SECRET, algorithm="HS256")


def upgrade_request(port: int, token: str, path: str = "/realtime") -> bytes:
    """The WebSocket upgrade request, the token as Authorization: Bearer (no compression offered)."""
    return (f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
            ).encode("ascii")


def client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One masked client frame (a zero masking key: the payload goes as it is)."""
    length = len(payload)
    if length < 126:
        head = bytes((0x80 | opcode, 0x80 | length))
    else:
        head = bytes((0x80 | opcode, 0x80 | 126)) + length.to_bytes(2, "big")
    return head + b"\0\0\0\0" + payload


def percentile(sorted_values: list, fraction: float) -> Optional[float]:
    """The nearest-rank percentile of an already sorted list (None when empty)."""
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, int(round(fraction * len(sorted_values) + 0.5)) - 1))
    return sorted_values[index]


def _retrieve(future: asyncio.Future) -> None:
    """Marks a future's exception as seen (its waiter may have stopped waiting)."""
    if not future.cancelled():
        future.exception()


# -- the established clients --------------------------------------------------------------------


class EstablishedClient(asyncio.Protocol):
    """One WebSocket client: the handshake, then PING/PONG round trips."""

    def __init__(self, request: bytes, samples: list, counters: collections.Counter, think: float) -> None:
        self.request = request
        self.samples = samples
        self.counters = counters
        self.think = think
        self.transport: Optional[asyncio.Transport] = None
        self.buffer = bytearray()
        self.upgraded = False
        self.connected = asyncio.get_running_loop().create_future()
        self.connected.add_done_callback(_retrieve)
        self.reply: Optional[asyncio.Future] = None
        self.closed = False
        self.stopping = False
        self.next_id = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end])
            del self.buffer[:end + 4]
            match = STATUS.match(head)
            if not match or match.group(1) != b"101":
                if not self.connected.done():
                    self.connected.set_exception(ConnectionError(f"upgrade refused: {head[:60]!r}"))
                return
            self.upgraded = True
        self._frames()

    def _frames(self) -> None:
        buffer = self.buffer
        while len(buffer) >= 2:
            opcode, length, offset = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
            if length == 126:
                if len(buffer) < 4:
                    return
                length, offset = int.from_bytes(buffer[2:4], "big"), 4
            elif length == 127:
                if len(buffer) < 10:
                    return
                length, offset = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < offset + length:
                return
            payload = bytes(buffer[offset:offset + length])
            del buffer[:offset + length]
            if opcode == 0x1:
                self._message(json.loads(payload))
            elif opcode == 0x9 and self.transport is not None:
                self.transport.write(client_frame(payload, 0xA))
            elif opcode == 0x8:
                self.counters["close_frames"] += 1

    def _message(self, message: dict) -> None:
        kind = message.get("type")
        if kind == "CONNECTED" and not self.connected.done():
            self.connected.set_result(None)
        elif kind == "PONG" and self.reply is not None and not self.reply.done() and message.get("id") == self.next_id:
            self.reply.set_result(None)
        elif kind == "ERROR":
            self.counters["errors"] += 1

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.closed = True
        if not self.stopping:
            self.counters["dropped"] += 1
        if not self.connected.done():
            self.connected.set_exception(ConnectionError(f"closed before CONNECTED: {exc}"))
        if self.reply is not None and not self.reply.done():
            self.reply.set_exception(ConnectionError("closed"))

    async def run(self) -> None:
        """Round trips until the connection ends or :attr:`stopping`."""
        loop = asyncio.get_running_loop()
        while not self.closed and not self.stopping:
            self.next_id += 1
            self.reply = loop.create_future()
            self.reply.add_done_callback(_retrieve)
            sent_wall, sent = time.time(), time.perf_counter()
            assert self.transport is not None
            self.transport.write(client_frame(b'{"type":"PING","id":%d}' % self.next_id))
            try:
                await asyncio.wait_for(self.reply, REPLY_DEADLINE)
            except asyncio.TimeoutError:
                self.counters["reply_timeouts"] += 1
                continue
            except ConnectionError:
                return
            self.samples.append((sent_wall, (time.perf_counter() - sent) * 1000.0))
            await asyncio.sleep(self.think)


async def _stdin_line() -> str:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, sys.stdin.readline)


async def established_main(args: argparse.Namespace) -> dict:
    """The established process: connects, says ``ready``, keeps round trips until ``stop``."""
    loop = asyncio.get_running_loop()
    samples: list = []
    counters: collections.Counter = collections.Counter()
    clients = []
    for n in range(args.established):
        request = upgrade_request(args.port, make_token(f"established-{n}"))
        _, client = await asyncio.wait_for(loop.create_connection(
            lambda: EstablishedClient(request, samples, counters, args.think), HOST, args.port,
            local_addr=(ESTABLISHED_SOURCE, 0)), 10.0)
        await asyncio.wait_for(client.connected, 10.0)
        clients.append(client)
    tasks = [asyncio.create_task(client.run()) for client in clients]
    print("ready", flush=True)
    await _stdin_line()
    for client in clients:
        client.stopping = True
    await asyncio.wait(tasks, timeout=REPLY_DEADLINE + 1)
    for client in clients:
        if client.transport is not None:
            client.transport.close()
    return {"clients": len(clients), "samples": samples, "counters": dict(counters)}


# -- the storm ---------------------------------------------------------------------------------
# bench/loadgen/storm.cpp: one epoll loop per process (a Python loop could not open 2,000
# connections a second on two shared cores and still keep its deadlines).


def build_generator(directory: Optional[Path] = None) -> Path:
    """Compiles bench/loadgen/storm.cpp (into bench/.build by default) unless it is up to
    date; the executable's path."""
    source = ROOT / "bench" / "loadgen" / "storm.cpp"
    target = (directory or ROOT / "bench" / ".build") / "storm"
    if target.exists() and target.stat().st_mtime >= source.stat().st_mtime:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["g++", "-std=c++17", "-O2", "-Wall", "-Wextra", "-o", str(target), str(source)], check=True,
                   timeout=120)
    return target


# -- the orchestrator --------------------------------------------------------------------------


@dataclass
class StormConfig:
    """What :func:`run_storm` runs; see bench/storm/README.md for the defaults' reasons."""

    clients: int = 20_000
    storm_seconds: float = 10.0
    processes: int = 4
    sources_per_process: int = 4
    established: int = 100
    think: float = 0.05
    workers: int = 2
    max_connections: int = 6000
    max_connections_per_ip: int = 300
    max_upgrades_per_second: int = 0
    retry_after: int = 5
    backlog: int = 4096
    attempt_deadline: float = 10.0
    before: float = 5.0
    after: float = 5.0
    extra_serve_args: list = field(default_factory=list)
    build_directory: Optional[Path] = None


def _helper(argv: list, env: dict) -> subprocess.Popen:
    # stderr to a file: a helper must never block on a full pipe nobody reads.
    stderr = tempfile.TemporaryFile(mode="w+")
    process = subprocess.Popen(argv, cwd=str(ROOT), env=env,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True)
    process.stderr_file = stderr  # type: ignore[attr-defined]
    return process


def _stderr_tail(process: subprocess.Popen) -> str:
    handle = process.stderr_file  # type: ignore[attr-defined]
    handle.seek(0)
    return handle.read()[-3000:]


def _read_line(process: subprocess.Popen, prefix: str, timeout: float) -> str:
    """The helper's next stdout line, which must start with prefix, within timeout."""
    import selectors

    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise AssertionError(f"helper pid {process.pid} said nothing for {timeout} s (wanted {prefix!r}); "
                                 f"stderr {_stderr_tail(process)!r}")
    line = process.stdout.readline()
    if not line.startswith(prefix):
        stderr = _stderr_tail(process)
        raise AssertionError(f"helper pid {process.pid}: {line!r} (wanted {prefix!r}); stderr {stderr!r}")
    return line[len(prefix):].strip()


def _stop_helper(process: subprocess.Popen, timeout: float) -> Optional[dict]:
    """Says ``stop``; the JSON result it prints, or None (it is killed) if none comes in time."""
    try:
        assert process.stdin is not None
        process.stdin.write("stop\n")
        process.stdin.flush()
        out, _ = process.communicate(timeout=timeout)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if not lines:
            raise AssertionError(f"helper pid {process.pid} printed no result; stderr {_stderr_tail(process)!r}")
        return json.loads(lines[-1])
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        return None


def _kill(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
        process.wait(5)


def _phase_stats(samples: list) -> dict:
    values = sorted(rtt for _, rtt in samples)
    return {"round_trips": len(values), "p50_ms": _round(percentile(values, 0.50)),
            "p99_ms": _round(percentile(values, 0.99)), "max_ms": _round(values[-1] if values else None)}


def _round(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(value, 2)


def _worker_stats(pids: list) -> dict:
    stats = {}
    for pid in pids:
        try:
            fds = len(os.listdir(f"/proc/{pid}/fd"))
            with open(f"/proc/{pid}/status") as handle:
                rss = next(int(line.split()[1]) for line in handle if line.startswith("VmRSS:"))
            stats[str(pid)] = {"fds": fds, "rss_mib": round(rss / 1024, 1)}
        except OSError:
            stats[str(pid)] = {"gone": True}
    return stats


def _cpu_seconds(pid: int) -> float:
    """utime + stime of pid, in seconds (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def run_storm(config: StormConfig) -> dict:
    """Starts the hub and the helpers, runs the storm, stops everything by PID; the report."""
    from .procutil import LISTENING, UwsServer, children_of

    env = {k: v for k, v in os.environ.items() if not k.startswith("UWS_PY_")}
    pythonpath = [str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(pythonpath)
    serve_args = ["--jwt-secret", SECRET, "--rate-limit", "off", "--no-access-log", "--log-level", "warning",
                  "--workers", str(config.workers), "--max-connections", str(config.max_connections),
                  "--max-connections-per-ip", str(config.max_connections_per_ip),
                  "--max-upgrades-per-second", str(config.max_upgrades_per_second),
                  "--retry-after", str(config.retry_after), "--backlog", str(config.backlog),
                  *config.extra_serve_args]
    generator = build_generator(config.build_directory)
    token = make_token("storm")
    hub = UwsServer(*serve_args, env=env)
    helpers: list = []
    try:
        hub.wait_for_lines(LISTENING, config.workers, 20.0)
        workers = children_of(hub.pid)
        established = _helper([sys.executable, "-m", "tests.support.storm", "--port", str(hub.port),
                               "--established", str(config.established), "--think", str(config.think)], env)
        helpers.append(established)
        _read_line(established, "ready", 60.0)
        time.sleep(config.before)
        start = time.time() + 1.0
        per_process = [config.clients // config.processes + (1 if n < config.clients % config.processes else 0)
                       for n in range(config.processes)]
        storms = []
        for n, count in enumerate(per_process):
            sources = ",".join(f"127.0.{1 + n}.{10 + s}" for s in range(config.sources_per_process))
            storms.append(_helper([str(generator), "--port", str(hub.port), "--count", str(count), "--sources", sources,
                                   "--start", repr(start), "--seconds", str(config.storm_seconds),
                                   "--deadline", str(config.attempt_deadline), "--token", token], env))
        helpers.extend(storms)
        cpu_before = {pid: _cpu_seconds(pid) for pid in workers}
        bound = 1.0 + config.storm_seconds + config.attempt_deadline + 30.0
        resolved = [json.loads(_read_line(p, "resolved ", bound)) for p in storms]
        storm_end = max(r["resolved"] for r in resolved)
        during_workers = _worker_stats(workers)
        for pid in workers:
            if "gone" not in during_workers[str(pid)]:
                during_workers[str(pid)]["cpu_s_storm"] = round(_cpu_seconds(pid) - cpu_before[pid], 2)
        during_workers["load_average"] = os.getloadavg()
        time.sleep(config.after)
        est = _stop_helper(established, REPLY_DEADLINE + 15.0)
        storm_results = [_stop_helper(p, 20.0) for p in storms]
    finally:
        for process in helpers:
            _kill(process)
        hub.stop()
    return summarize(config, est, storm_results, start, storm_end, during_workers)


def summarize(config: StormConfig, est: Optional[dict], storms: list, start: float, storm_end: float,
              workers: dict) -> dict:
    """The report of one run (see bench/storm/README.md for each field)."""
    if est is None or any(s is None for s in storms):
        raise AssertionError("a helper did not report within its deadline")
    samples = est["samples"]
    phases = {
        "before": _phase_stats([s for s in samples if s[0] < start]),
        "during": _phase_stats([s for s in samples if start <= s[0] <= storm_end]),
        "after": _phase_stats([s for s in samples if s[0] > storm_end]),
    }
    outcomes: collections.Counter = collections.Counter()
    missing_retry_after: collections.Counter = collections.Counter()
    latencies: dict = collections.defaultdict(list)
    retry_range: list = []
    for s in storms:
        outcomes.update(s["outcomes"])
        missing_retry_after.update(s["refused_without_retry_after"])
        for k, v in s["latency_ms"].items():
            latencies[k].extend(v)
        if s["retry_after"]:
            retry_range.extend(s["retry_after"])
    attempts = sum(s["attempts"] for s in storms)
    connect_ms = {k: {"p50": _round(percentile(sorted(v), 0.5)), "p99": _round(percentile(sorted(v), 0.99)),
                      "max": _round(max(v))} for k, v in latencies.items()}
    launch_s = max(s["launched"] for s in storms) - min(s["began"] for s in storms)
    storm_cpu = sum(w.get("cpu_s_storm", 0.0) for w in workers.values() if isinstance(w, dict))
    return {
        "config": {k: v for k, v in config.__dict__.items() if k != "build_directory"},
        "workers_cpu_us_per_attempt": round(storm_cpu * 1e6 / max(1, sum(s["attempts"] for s in storms)), 1),
        "established": {"clients": est["clients"], "dropped": est["counters"].get("dropped", 0),
                        "reply_timeouts": est["counters"].get("reply_timeouts", 0),
                        "errors": est["counters"].get("errors", 0), "phases": phases},
        "storm": {"attempts": attempts, "resolved": sum(outcomes.values()), "launch_s": round(launch_s, 2),
                  "resolve_s": round(storm_end - start, 2), "outcomes": dict(sorted(outcomes.items())),
                  "refused_without_retry_after": dict(missing_retry_after),
                  "retry_after_s": [min(retry_range), max(retry_range)] if retry_range else None,
                  "held": sum(s["held"] for s in storms),
                  "dropped_after_101": sum(s["dropped_after_101"] for s in storms),
                  "connect_ms": connect_ms},
        "workers_at_storm_end": workers,
    }


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description="the established clients of tests/support/storm.py")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--established", type=int, default=100)
    parser.add_argument("--think", type=float, default=0.05)
    args = parser.parse_args(argv)
    result = asyncio.run(established_main(args))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
