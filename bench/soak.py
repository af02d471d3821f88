"""Soak test: a RealtimeServer under connection churn, steady publishing and slow clients for
a long run, watched for leaks (memory, descriptors, connections).

usage: python bench/soak.py [--minutes 10] [--port 0] [--churners 50] [--publishers 4]
                            [--readers 10] [--slow 3]

The server runs in a subprocess (this script with --serve PORT). Load, for the whole run:
- churners: connect, SUBSCRIBE, PUBLISH a few messages, read a little, disconnect, repeat;
- publishers: persistent clients publishing 20 messages/s each to the soak topics;
- readers: persistent subscribers that read everything;
- slow clients: subscribers with a 4 KiB receive buffer that never read (they sit at
  max_backpressure, so the server drops for them), reconnecting every 30-45 s.
Every 5 s the server's RSS (/proc/PID/status VmRSS), open descriptors (/proc/PID/fd),
connections (/health) and counters (/metrics), and the load's own error count, go to
bench/results/soak-<timestamp>.csv, plotted to a PNG next to it. At the end every client
leaves, the script waits 10 s, takes a last sample and prints baseline / plateau (median of
the last third of the run) / after figures.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import orjson

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))

from wsclient import ConnectionClosed, connect, raw_http  # noqa: E402

HOST = "127.0.0.1"
SECRET = "soak-secret-soak-secret-soak-secret-soak"
TOPICS = [f"soak.{i}" for i in range(10)]
SAMPLE_EVERY = 5.0
SETTLE_SECONDS = 10.0
PLOT_PYTHONS = [BENCH / ".baselines" / "venv" / "bin" / "python", Path(sys.executable)]
COLUMNS = ["seconds", "phase", "rss_kib", "fds", "connections", "churn_cycles", "published",
           "client_errors", "drops", "protocol_errors", "error_replies"]


# -- the server (subprocess) -------------------------------------------------------------------


def serve(port: int) -> None:
    from uws_py import JWTAuth, RateLimit, RealtimeServer

    server = RealtimeServer(
        auth=JWTAuth(secret=SECRET),
        rate_limit=RateLimit(messages=1000, per_seconds=1),
        max_backpressure=256 * 1024,
        idle_timeout=60,
        compression=False,
    )
    server.listen(port=port, host=HOST)
    print(f"listening {server.port}", flush=True)
    server.run_forever()


# -- the load ----------------------------------------------------------------------------------


def make_token(sub: str) -> str:
    import jwt

    return jwt.encode({"sub": sub, "exp": int(time.time()) + 24 * 3600}, SECRET, algorithm="HS256")


class Load:
    """The client threads and their counters."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.cycles = 0
        self.published = 0
        self.errors = 0
        self.last_error = ""
        self.threads: list = []
        self.persistent: list = []

    def _count(self, **deltas: int) -> None:
        with self.lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    def _error(self, error: BaseException) -> None:
        with self.lock:
            self.errors += 1
            self.last_error = f"{type(error).__name__}: {error}"

    def _join(self, name: str, recv_buffer_size: Optional[int] = None):
        client = connect(HOST, self.port, "/realtime", headers=[("Authorization", f"Bearer {make_token(name)}")],
                         recv_buffer_size=recv_buffer_size)
        message = client.recv_message(5.0)
        if b'"CONNECTED"' not in message.payload:
            client.disconnect()
            raise RuntimeError(f"expected CONNECTED, got {message.payload[:100]!r}")
        return client

    @staticmethod
    def _send(client, message: dict) -> None:
        client.send_text(orjson.dumps(message))

    def churner(self, index: int) -> None:
        rng = random.Random(index)
        while not self.stop.is_set():
            try:
                client = self._join(f"churn-{index}")
                try:
                    topic = rng.choice(TOPICS)
                    self._send(client, {"type": "SUBSCRIBE", "topic": topic, "id": 1})
                    for i in range(3):
                        self._send(client, {"type": "PUBLISH", "topic": topic, "data": {"n": i}})
                    self._send(client, {"type": "PING", "id": "last"})
                    # Read up to our PONG; the publishes of others may come in between.
                    while b'"PONG"' not in client.recv_message(5.0).payload:
                        pass
                finally:
                    client.disconnect()
                self._count(cycles=1, published=3)
            except (OSError, TimeoutError, ConnectionClosed, RuntimeError, AssertionError) as error:
                self._error(error)
                self.stop.wait(1.0)
            self.stop.wait(rng.uniform(0.1, 0.3))

    def publisher(self, index: int) -> None:
        while not self.stop.is_set():
            try:
                client = self._join(f"publisher-{index}")
                self.persistent.append(client)
                sequence = 0
                while not self.stop.wait(0.05):
                    topic = TOPICS[sequence % len(TOPICS)]
                    self._send(client, {"type": "PUBLISH", "topic": topic, "data": {"seq": sequence, "pad": "x" * 200}})
                    sequence += 1
                    self._count(published=1)
                    client.sock.setblocking(False)
                    try:  # discard whatever the server sent us (errors would be counted server side)
                        while client.sock.recv(65536):
                            pass
                    except (BlockingIOError, InterruptedError):
                        pass
                    finally:
                        client.sock.setblocking(True)
            except (OSError, TimeoutError, ConnectionClosed, RuntimeError, AssertionError) as error:
                self._error(error)
                self.stop.wait(1.0)

    def reader(self, index: int) -> None:
        while not self.stop.is_set():
            try:
                client = self._join(f"reader-{index}")
                self.persistent.append(client)
                for topic in TOPICS:
                    self._send(client, {"type": "SUBSCRIBE", "topic": topic})
                while not self.stop.is_set():
                    try:
                        client.recv_message(0.5)
                    except TimeoutError:
                        pass
            except (OSError, ConnectionClosed, RuntimeError, AssertionError) as error:
                if not self.stop.is_set():
                    self._error(error)
                    self.stop.wait(1.0)

    def slow(self, index: int) -> None:
        # Reconnects every 30-45 s: never idle long enough for the idle timeout (60 s) to
        # close it (it answers no pings), and each leaving tears down a full buffer.
        while not self.stop.is_set():
            try:
                client = self._join(f"slow-{index}", recv_buffer_size=4096)
                self.persistent.append(client)
                for topic in TOPICS:
                    self._send(client, {"type": "SUBSCRIBE", "topic": topic})
                self.stop.wait(30.0 + 5.0 * (index % 4))
                client.disconnect()
                self.persistent.remove(client)
            except (OSError, TimeoutError, ConnectionClosed, RuntimeError, AssertionError) as error:
                self._error(error)
                self.stop.wait(1.0)

    def start(self, churners: int, publishers: int, readers: int, slow: int) -> None:
        for role, count in ((self.slow, slow), (self.reader, readers), (self.publisher, publishers),
                            (self.churner, churners)):
            for index in range(count):
                thread = threading.Thread(target=role, args=(index,), name=f"{role.__name__}-{index}", daemon=True)
                thread.start()
                self.threads.append(thread)

    def finish(self) -> None:
        """Every client leaves."""
        self.stop.set()
        for client in list(self.persistent):
            try:
                client.disconnect()
            except OSError:
                pass
        for thread in self.threads:
            thread.join(10.0)


# -- sampling ------------------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def scrape(port: int) -> dict:
    """/health's connections and the counters of /metrics we watch."""
    request = f"GET {{}} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n"
    health = orjson.loads(raw_http(HOST, port, request.format("/health").encode()).body)
    values = {"connections": health["connections"], "drops": 0, "protocol_errors": 0, "error_replies": 0}
    for line in raw_http(HOST, port, request.format("/metrics").encode()).body.decode().splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, value = line.rsplit(" ", 1)
        if name == "uws_dropped_total":
            values["drops"] = int(float(value))
        elif name == "uws_protocol_errors_total":
            values["protocol_errors"] = int(float(value))
        elif name.startswith("uws_errors_total"):
            values["error_replies"] += int(float(value))
    return values


def sample(pid: int, port: int, load: Load, started: float, phase: str) -> dict:
    row = {"seconds": round(time.monotonic() - started, 1), "phase": phase, "rss_kib": rss_kib(pid),
           "fds": len(os.listdir(f"/proc/{pid}/fd"))}
    row.update(scrape(port))
    with load.lock:
        row.update(churn_cycles=load.cycles, published=load.published, client_errors=load.errors)
    return row


PLOT_SCRIPT = r"""
import csv, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
rows = list(csv.DictReader(open(sys.argv[1])))
t = [float(r["seconds"]) for r in rows]
fig, axes = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
axes[0].plot(t, [int(r["rss_kib"]) / 1024 for r in rows], marker=".")
axes[0].set_ylabel("server RSS (MiB)")
axes[0].set_ylim(bottom=0)
axes[1].plot(t, [int(r["fds"]) for r in rows], marker=".", label="open fds")
axes[1].plot(t, [int(r["connections"]) for r in rows], marker=".", label="WebSocket connections")
axes[1].set_ylabel("count")
axes[1].legend()
axes[2].plot(t, [int(r["churn_cycles"]) for r in rows], label="churn cycles")
axes[2].plot(t, [int(r["drops"]) for r in rows], label="drops (slow clients)")
axes[2].plot(t, [int(r["client_errors"]) for r in rows], label="client errors")
axes[2].set_ylabel("cumulative")
axes[2].set_xlabel("seconds")
axes[2].legend()
load_end = [float(r["seconds"]) for r in rows if r["phase"] == "after"]
for ax in axes:
    for x in load_end:
        ax.axvline(x, color="grey", linestyle="--")
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


# -- main ----------------------------------------------------------------------------------------


def start_server(port: int) -> tuple:
    process = subprocess.Popen([sys.executable, __file__, "--serve", str(port)], stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 15.0
    line = process.stdout.readline()
    if not line.startswith("listening ") or time.monotonic() > deadline:
        process.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return process, int(line.split()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--churners", type=int, default=50)
    parser.add_argument("--publishers", type=int, default=4)
    parser.add_argument("--readers", type=int, default=10)
    parser.add_argument("--slow", type=int, default=3)
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return

    process, port = start_server(args.port)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results = BENCH / "results"
    results.mkdir(exist_ok=True)
    csv_path = results / f"soak-{stamp}.csv"
    png_path = csv_path.with_suffix(".png")
    load = Load(port)
    started = time.monotonic()
    rows = []
    try:
        with open(csv_path, "w", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=COLUMNS)
            writer.writeheader()

            def record(phase: str) -> dict:
                row = sample(process.pid, port, load, started, phase)
                rows.append(row)
                writer.writerow(row)
                out.flush()
                return row

            baseline = record("baseline")
            load.start(args.churners, args.publishers, args.readers, args.slow)
            end = started + args.minutes * 60
            next_sample = time.monotonic() + SAMPLE_EVERY
            while time.monotonic() < end:
                time.sleep(max(0.0, min(next_sample, end) - time.monotonic()))
                if process.poll() is not None:
                    raise RuntimeError(f"the server exited with {process.returncode}")
                record("load")
                print(f"{rows[-1]['seconds']:7.1f} s  RSS {rows[-1]['rss_kib'] / 1024:6.1f} MiB  fds {rows[-1]['fds']:5}  "
                      f"connections {rows[-1]['connections']:4}  cycles {rows[-1]['churn_cycles']}  "
                      f"errors {rows[-1]['client_errors']}", flush=True)
                next_sample += SAMPLE_EVERY
            load.finish()
            time.sleep(SETTLE_SECONDS)
            after = record("after")
    finally:
        load.finish()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    loaded = [row for row in rows if row["phase"] == "load"]
    last_third = loaded[-max(1, len(loaded) // 3):]
    plateau_rss = statistics.median(row["rss_kib"] for row in last_third)
    plateau_fds = statistics.median(row["fds"] for row in last_third)
    first = loaded[0] if loaded else baseline
    print(f"\nsoak: {args.minutes:g} min, {after['churn_cycles']} churn cycles, {after['published']} publishes, "
          f"{after['client_errors']} client errors ({load.last_error or 'none'}), {after['drops']} drops, "
          f"{after['protocol_errors']} protocol errors")
    print(f"RSS MiB: baseline {baseline['rss_kib'] / 1024:.1f}, first loaded sample {first['rss_kib'] / 1024:.1f}, "
          f"plateau {plateau_rss / 1024:.1f}, after {after['rss_kib'] / 1024:.1f}")
    print(f"fds: baseline {baseline['fds']}, plateau {plateau_fds:.0f}, after {after['fds']}; "
          f"connections after {after['connections']}")
    plotted = plot(csv_path, png_path, f"uws-py soak, {args.minutes:g} min ({stamp})")
    print(f"wrote {csv_path}" + (f" and {png_path}" if plotted else ""))


if __name__ == "__main__":
    main()
