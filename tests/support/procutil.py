"""Processes for the CLI and broker tests: `uws-py` and `redis-server` on loopback, and the
few requests the tests make to a running hub (/health, /metrics, realtime messages).

Every wait has a deadline, and stopping goes by PID only, to processes a test started (and,
for a supervisor that would not stop, to its own children, found in /proc): SIGTERM, then
SIGKILL when the grace period runs out. stdout is read line by line on a thread, so a test can
wait for the "listening" line; stderr goes to a file, so a chatty process never blocks on a
full pipe and a test can read everything it logged.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from . import wsclient

HOST = "127.0.0.1"
# Deadlines, not delays: a wait ends as soon as its condition holds. They are generous because CI
# machines run these tests at a load of 3-8 on 2 cores, where starting a worker (an interpreter
# importing the package) can take several seconds.
START_TIMEOUT = 30.0
WAIT_TIMEOUT = 30.0
STOP_GRACE = 10.0
# The built-in hub prints ws[s]://HOST:PORT/PATH; an App target prints HOST:PORT.
LISTENING = re.compile(r"uws-py \S+: listening on (?:(?P<scheme>wss?)://)?(?P<host>[^:/\s]+):(?P<port>\d+)(?P<path>\S*)")


def free_port(host: str = HOST) -> int:
    """A port nobody listens on right now (the kernel's pick; free again once returned)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def uws_py_command() -> list:
    """The installed console script next to this interpreter, else `python -m uws_py.cli`."""
    script = Path(sys.executable).with_name("uws-py")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "uws_py.cli"]


def children_of(pid: int) -> list:
    """Direct children of pid, from /proc (empty where /proc has no such file)."""
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found.extend(int(child) for child in handle.read().split())
    except OSError:
        pass
    return found


def pid_alive(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Process:
    """One subprocess started by a test."""

    def __init__(self, argv: Sequence[str], env: Optional[dict] = None, cwd: Optional[str] = None) -> None:
        self.argv = list(argv)
        self._stderr_file = tempfile.TemporaryFile()
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr_file,
            env=env,
            cwd=cwd,
        )
        self.pid = self.popen.pid
        self._lines: list = []
        self._changed = threading.Condition()
        self._stdout_done = False
        self._reader = threading.Thread(target=self._read_stdout, name=f"stdout-{self.pid}", daemon=True)
        self._reader.start()

    def _read_stdout(self) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            with self._changed:
                self._lines.append(raw.decode("utf-8", "replace").rstrip("\r\n"))
                self._changed.notify_all()
        with self._changed:
            self._stdout_done = True
            self._changed.notify_all()

    @property
    def stdout_lines(self) -> list:
        with self._changed:
            return list(self._lines)

    def stderr_text(self) -> str:
        self._stderr_file.flush()
        self._stderr_file.seek(0)
        return self._stderr_file.read().decode("utf-8", "replace")

    def wait_for_lines(self, pattern: "re.Pattern", count: int = 1, timeout: float = START_TIMEOUT) -> list:
        """The first `count` stdout lines matching pattern, as match objects; AssertionError
        (with what the process said) if they do not all appear in time or stdout ends first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                matches = [m for m in map(pattern.search, self._lines) if m]
                if len(matches) >= count:
                    return matches[:count]
                remaining = deadline - time.monotonic()
                if self._stdout_done or remaining <= 0:
                    break
                self._changed.wait(min(remaining, 0.2))
        reason = "stdout closed" if self._stdout_done else f"timed out after {timeout} s"
        raise AssertionError(
            f"{reason} waiting for {count} line(s) matching {pattern.pattern!r} from {self.argv}; "
            f"exit code {self.popen.poll()}; stdout {self.stdout_lines!r}; stderr {self.stderr_text()[-2000:]!r}"
        )

    def wait(self, timeout: float) -> int:
        """The exit code; AssertionError if the process is still running after timeout."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.argv} (pid {self.pid}) still running after {timeout} s") from None

    def signal(self, signum: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signum)

    def stop(self, grace: float = STOP_GRACE) -> Optional[int]:
        """SIGTERM, then SIGKILL after grace seconds (to the process and any children it left);
        returns the exit code."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                for child in children_of(self.pid):
                    try:
                        os.kill(child, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                self.popen.kill()
                self.popen.wait(5)
        self._reader.join(timeout=2)
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        return self.popen.returncode

    def __enter__(self) -> "Process":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def run_uws_py(*args: str, env: Optional[dict] = None, cwd: Optional[str] = None, timeout: float = 20.0) -> subprocess.CompletedProcess:
    """Runs a `uws-py` command that is expected to end by itself (errors, --version, check-config)."""
    return subprocess.run(
        uws_py_command() + list(args),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
    )


class UwsServer(Process):
    """`uws-py serve ...` on loopback, started and waited for: .port is where it listens."""

    def __init__(
        self,
        *args: str,
        host: Optional[str] = HOST,
        port: Optional[int] = 0,
        env: Optional[dict] = None,
        cwd: Optional[str] = None,
        timeout: float = START_TIMEOUT,
    ) -> None:
        """host and port become --host/--port unless None (to leave them to env or file)."""
        argv = uws_py_command() + ["serve"] + list(args)
        if host is not None:
            argv += ["--host", host]
        if port is not None:
            argv += ["--port", str(port)]
        super().__init__(argv, env=env, cwd=cwd)
        try:
            # With --workers every worker prints this line; the first one is enough (the
            # others may be interleaved with it, since they share the pipe).
            matches = self.wait_for_lines(LISTENING, 1, timeout)
        except BaseException:
            self.stop()
            raise
        self.port = int(matches[0].group("port"))
        self.path = matches[0].group("path")


class RedisServer:
    """redis-server on a loopback port, without persistence unless append_only; stop() and
    start() again on the same port to simulate an outage."""

    def __init__(self, port: Optional[int] = None, append_only: bool = False, debug_command: bool = False) -> None:
        """debug_command: allow DEBUG (from loopback), e.g. DEBUG SLEEP to freeze the server."""
        self.port = port or free_port()
        self.debug_command = debug_command
        # With append_only, every write is fsynced to the AOF before it is acknowledged, so a
        # restart keeps everything (the history tests' "Redis with persistence").
        self.append_only = append_only
        self.workdir = tempfile.mkdtemp(prefix="uws-py-redis-")
        self.process: Optional[Process] = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    def start(self, timeout: float = START_TIMEOUT) -> "RedisServer":
        argv = [
            shutil.which("redis-server") or "redis-server",
            "--port", str(self.port),
            "--bind", HOST,
            "--save", "",
            "--appendonly", "yes" if self.append_only else "no",
            "--appendfsync", "always",
            "--daemonize", "no",
            "--dir", self.workdir,
        ] + (["--enable-debug-command", "local"] if self.debug_command else [])
        self.process = Process(argv)
        deadline = time.monotonic() + timeout
        while not self.ping():
            if self.process.popen.poll() is not None or time.monotonic() > deadline:
                output = self.process.stdout_lines[-20:]
                self.stop()
                raise AssertionError(f"redis-server did not answer PING on port {self.port}: {output!r}")
            time.sleep(0.05)
        return self

    def ping(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=1.0) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace=5.0)
            self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


class PeakClients:
    """``with PeakClients(server) as watch: ...``: samples, on a thread, how many clients the
    Redis has besides the watcher's own connection, every 5 ms; ``watch.peak`` is the most seen
    (a last sample is taken on exit)."""

    def __init__(self, server: RedisServer, interval: float = 0.005) -> None:
        import redis

        self.client = redis.Redis(host=HOST, port=server.port, socket_timeout=2, socket_connect_timeout=2)
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-clients", daemon=True)

    def count(self) -> int:
        """Clients connected now, the watcher's own connection not counted."""
        return len(self.client.client_list()) - 1

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.count())
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakClients":
        self.peak = max(self.peak, self.count())
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
        self.peak = max(self.peak, self.count())
        self.client.close()


# -- talking to a running hub ------------------------------------------------------------------


def http_get(port: int, path: str, timeout: float = 5.0, tls: Any = None) -> wsclient.HttpResponse:
    """One GET on a new connection (so that with workers the kernel picks a worker each time)."""
    request = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n".encode()
    return wsclient.raw_http(HOST, port, request, timeout, tls=tls)


def health(port: int, tls: Any = None) -> dict:
    response = http_get(port, "/health", tls=tls)
    assert response.status == 200, response
    return json.loads(response.body)


def health_pids(port: int, requests: int = 40, tolerate_resets: bool = False) -> set:
    """The pids that answered `requests` /health requests, each on its own connection. With
    tolerate_resets, a connection the kernel queued to a worker that just died is skipped."""
    pids = set()
    for _ in range(requests):
        try:
            pids.add(health(port)["pid"])
        except (wsclient.ConnectionClosed, ConnectionError):
            if not tolerate_resets:
                raise
    return pids


def metric_value(port: int, name: str) -> Optional[float]:
    """The value of an unlabelled sample in /metrics, or None if it is not there."""
    response = http_get(port, "/metrics")
    assert response.status == 200, response
    for line in response.body.decode().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == name:
            return float(parts[1])
    return None


def wait_until(predicate: Any, what: str, timeout: float = WAIT_TIMEOUT, interval: float = 0.05) -> Any:
    """Polls predicate until it returns something truthy; AssertionError naming what did not
    happen (and the last value seen) after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s (last: {value!r})")
        time.sleep(interval)


class RealtimeClient:
    """A client of the realtime protocol (docs/protocol.md) on a wsclient connection."""

    def __init__(self, port: int, path: str = "/realtime", tls: Any = None, **connect_options: Any) -> None:
        self.ws = wsclient.connect(HOST, port, path, tls=tls, **connect_options)
        self.connected = self.recv()
        assert self.connected["type"] == "CONNECTED", self.connected
        self._next_id = 0

    def send(self, message: dict) -> None:
        self.ws.send_text(json.dumps(message))

    def recv(self, timeout: float = 5.0) -> dict:
        message = self.ws.recv_message(timeout)
        assert message.opcode == wsclient.Op.TEXT, f"expected a text message, got {message}"
        return json.loads(message.payload)

    def request(self, message: dict, timeout: float = 5.0) -> dict:
        """Sends message with a fresh id; returns the reply with that id (others are skipped)."""
        self._next_id += 1
        request_id = self._next_id
        self.send({**message, "id": request_id})
        deadline = time.monotonic() + timeout
        while True:
            reply = self.recv(max(deadline - time.monotonic(), 0.001))
            if reply.get("id") == request_id:
                return reply

    def subscribe(self, topic: str) -> None:
        reply = self.request({"type": "SUBSCRIBE", "topic": topic})
        assert reply["type"] == "SUBSCRIBED", reply

    def unsubscribe(self, topic: str) -> None:
        reply = self.request({"type": "UNSUBSCRIBE", "topic": topic})
        assert reply["type"] == "UNSUBSCRIBED", reply

    def publish(self, topic: str, data: Any) -> None:
        self.send({"type": "PUBLISH", "topic": topic, "data": data})

    def expect_message(self, topic: str, timeout: float = 5.0) -> Any:
        """The data of the next MESSAGE (anything else fails the test)."""
        try:
            message = self.recv(timeout)
        except TimeoutError:
            raise AssertionError(f"no MESSAGE on {topic!r} within {timeout} s") from None
        assert message.get("type") == "MESSAGE" and message.get("topic") == topic, message
        return message["data"]

    def expect_silence(self, within: float = 0.3) -> None:
        """Fails if anything but a ping arrives within `within` seconds."""
        try:
            message = self.ws.recv_message(within)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected message: {message}")

    def expect_close(self, timeout: float = 10.0) -> int:
        """Waits for the server's close frame, answers it and closes TCP; returns the code."""
        code, _ = self.ws.expect_close(timeout)
        try:
            self.ws.send_close(code)
        except OSError:
            pass
        self.ws.disconnect()
        return code

    def close(self) -> None:
        """Closes TCP at once (the server sees the connection go without a handshake)."""
        self.ws.disconnect()


def cluster_ports(count: int) -> list:
    """count ports for cluster nodes: each node also listens on port + 10000 (the cluster bus),
    so a port must be at most 55535 and both it and its bus port free right now."""
    import random

    found: list = []
    candidates = random.sample(range(20000, 55535), 2000)
    for port in candidates:
        if len(found) == count:
            break
        probes = []
        try:
            for candidate in (port, port + 10000):
                probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                probes.append(probe)
                probe.bind((HOST, candidate))
            found.append(port)
        except OSError:
            pass
        finally:
            for probe in probes:
                probe.close()
    assert len(found) == count, f"only {len(found)} free cluster port pair(s) found"
    return found


class RedisCluster:
    """A Redis Cluster on loopback: ``masters * (1 + replicas)`` redis-server processes with
    ``--cluster-enabled yes`` on free ports, each in its own directory under one temp dir,
    joined by ``redis-cli --cluster create`` and waited for until every node reports
    ``cluster_state:ok``. ``node_timeout`` (ms) is low so that a killed master's replica is
    promoted within a few seconds. ``full_coverage=False`` starts the nodes with
    ``--cluster-require-full-coverage no`` (the healthy shards take commands while one has no
    master). Stopped by PID (:meth:`cleanup`); :meth:`kill` SIGKILLs one."""

    def __init__(self, masters: int = 3, replicas: int = 0, node_timeout: int = 1000,
                 full_coverage: bool = True) -> None:
        self.masters = masters
        self.replicas = replicas
        self.node_timeout = node_timeout
        self.full_coverage = full_coverage
        self.workdir = tempfile.mkdtemp(prefix="uws-py-redis-cluster-")
        self.ports = cluster_ports(masters * (1 + replicas))
        self.processes: dict = {}

    @property
    def url(self) -> str:
        """``redis+cluster://`` with every node as a startup node."""
        return "redis+cluster://" + ",".join(f"{HOST}:{port}" for port in self.ports)

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None and shutil.which("redis-cli") is not None

    def cli(self, port: int, *args: str, timeout: float = 10.0) -> str:
        """One redis-cli command against the node on port; its stdout."""
        done = subprocess.run([shutil.which("redis-cli") or "redis-cli", "-h", HOST, "-p", str(port), *args],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
        return done.stdout

    def start(self, timeout: float = 30.0) -> "RedisCluster":
        for port in self.ports:
            directory = os.path.join(self.workdir, str(port))
            os.makedirs(directory)
            self.processes[port] = Process([
                shutil.which("redis-server") or "redis-server",
                "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--dir", directory,
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(self.node_timeout),
                # A replica's first sync starts at once (the default waits 5 s for more replicas):
                # a replica that never synced is not promoted when its master dies.
                "--repl-diskless-sync-delay", "0",
                "--cluster-require-full-coverage", "yes" if self.full_coverage else "no",
            ])
        deadline = time.monotonic() + timeout
        try:
            for port in self.ports:
                wait_until(lambda port=port: self.cli(port, "PING").strip() == "PONG", f"redis node {port} answering",
                           timeout=max(deadline - time.monotonic(), 1.0))
            created = subprocess.run(
                [shutil.which("redis-cli") or "redis-cli", "--cluster", "create",
                 *(f"{HOST}:{port}" for port in self.ports),
                 "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=max(deadline - time.monotonic(), 1.0))
            assert created.returncode == 0, f"redis-cli --cluster create failed: {created.stdout[-2000:]} {created.stderr}"
            self.wait_healthy(timeout=max(deadline - time.monotonic(), 1.0))
            if self.replicas:
                wait_until(lambda: self.synced_replicas() == self.masters * self.replicas,
                           "every replica synced with its master", timeout=max(deadline - time.monotonic(), 1.0),
                           interval=0.1)
        except BaseException:
            self.cleanup()
            raise
        return self

    def live_ports(self) -> list:
        return [port for port, process in self.processes.items() if process.popen.poll() is None]

    def wait_healthy(self, timeout: float = 20.0) -> None:
        """Every running node says cluster_state:ok and all slots are served by a running master."""
        def healthy() -> bool:
            live = self.live_ports()
            if not all("cluster_state:ok" in self.cli(port, "CLUSTER", "INFO") for port in live):
                return False
            return len(self.master_ports()) == self.masters
        wait_until(healthy, f"cluster of {len(self.ports)} node(s) reporting cluster_state:ok", timeout=timeout,
                   interval=0.2)

    def synced_replicas(self) -> int:
        """How many running replicas have their link to the master up."""
        return sum("master_link_status:up" in self.cli(port, "INFO", "replication") for port in self.live_ports())

    def master_ports(self) -> list:
        """Ports of running masters that serve slots, as a running node sees them."""
        live = self.live_ports()
        masters = []
        for line in self.cli(live[0], "CLUSTER", "NODES").splitlines():
            fields = line.split()
            if len(fields) < 9 or "master" not in fields[2] or "fail" in fields[2]:
                continue
            port = int(fields[1].split("@", 1)[0].rsplit(":", 1)[1])
            if port in live:
                masters.append(port)
        return sorted(masters)

    def slot_ranges(self) -> list:
        """(first slot, last slot, port) of every range a running master serves, from CLUSTER NODES."""
        live = self.live_ports()
        ranges = []
        for line in self.cli(live[0], "CLUSTER", "NODES").splitlines():
            fields = line.split()
            if len(fields) < 9 or "master" not in fields[2] or "fail" in fields[2]:
                continue
            port = int(fields[1].split("@", 1)[0].rsplit(":", 1)[1])
            for part in fields[8:]:
                low, _, high = part.partition("-")
                if low.isdigit():
                    ranges.append((int(low), int(high or low), port))
        return ranges

    def port_of_slot(self, slot: int, ranges: Optional[list] = None) -> int:
        """The port of the running master serving slot (ranges: a slot_ranges() to reuse)."""
        for low, high, port in ranges if ranges is not None else self.slot_ranges():
            if low <= slot <= high:
                return port
        raise AssertionError(f"no running master serves slot {slot}")

    def stop_all(self) -> None:
        """Stops every node (SIGTERM); their directories (and nodes.conf) stay."""
        for process in self.processes.values():
            process.stop(grace=5.0)

    def start_all(self, timeout: float = 30.0) -> None:
        """Starts every node again on its port, from its nodes.conf; waits for cluster_state:ok."""
        for port, process in list(self.processes.items()):
            self.processes[port] = Process(process.argv)
        for port in self.ports:
            wait_until(lambda port=port: self.cli(port, "PING").strip() == "PONG", f"redis node {port} answering",
                       timeout=timeout)
        self.wait_healthy(timeout=timeout)

    def kill(self, port: int) -> None:
        """SIGKILLs the node on port (a crash, not a shutdown)."""
        process = self.processes[port]
        process.popen.kill()
        process.popen.wait(5)

    def cleanup(self) -> None:
        for process in self.processes.values():
            process.stop(grace=5.0)
        self.processes.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)


class NatsServer:
    """nats-server on a loopback port with its monitoring endpoint (for subscription counts);
    stop() and start() again on the same ports to simulate an outage."""

    def __init__(self) -> None:
        self.port = free_port()
        self.monitor_port = free_port()
        self.process: Optional[Process] = None

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.port}"

    @staticmethod
    def available() -> bool:
        return shutil.which("nats-server") is not None

    def start(self, timeout: float = START_TIMEOUT) -> "NatsServer":
        self.process = Process([shutil.which("nats-server") or "nats-server", "-a", HOST, "-p", str(self.port),
                                "-m", str(self.monitor_port)])
        try:
            wait_until(self.answering, f"nats-server answering on port {self.port}", timeout=timeout)
        except AssertionError:
            self.stop()
            raise
        return self

    def answering(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=1.0) as sock:
                return sock.recv(4096).startswith(b"INFO")
        except OSError:
            return False

    def subscriptions(self, subject: str) -> int:
        """How many subscriptions the server holds on exactly this subject."""
        response = http_get(self.monitor_port, "/subsz?subs=1&limit=100000")
        listed = json.loads(response.body).get("subscriptions_list") or []
        return sum(1 for entry in listed if entry.get("subject") == subject)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace=5.0)
            self.process = None

    def cleanup(self) -> None:
        self.stop()
