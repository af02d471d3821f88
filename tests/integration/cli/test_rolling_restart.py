"""A SIGHUP rolling restart under a stream of new connections resets none of them.

Regression: each old worker closed its SO_REUSEPORT listening socket while the kernel still
had connections queued on it (not yet accepted), and closing a listener resets its queue
(about 1 connection in 13,000 in the CLI tests). The supervisor now steers new connections
to the new worker before stopping the old one, and waits until the old one accepted what
was queued (python/uws_py/reuseport.py)."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

from tests.support.procutil import HOST, UwsServer, children_of, pid_alive, wait_until

CONNECTORS = 12
RESTART_BOUND = 30.0


def clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("UWS_PY_")}


class Outcomes:
    """What the connections made during the restart went through."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.answered = 0
        self.reset = 0
        self.refused = 0
        self.other: list[str] = []

    def add(self, kind: str, detail: str = "") -> None:
        with self.lock:
            if kind == "other":
                self.other.append(detail)
            else:
                setattr(self, kind, getattr(self, kind) + 1)


def one_request(port: int) -> tuple[str, str]:
    """Connects, asks /health on a fresh connection and reads the whole answer."""
    request = f"GET /health HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n".encode()
    try:
        with socket.create_connection((HOST, port), timeout=5.0) as sock:
            sock.sendall(request)
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except ConnectionRefusedError:
        return "refused", ""
    except (ConnectionResetError, BrokenPipeError):
        return "reset", ""
    except OSError as exc:
        return "other", repr(exc)
    if data.startswith(b"HTTP/1.1 200"):
        return "answered", ""
    # Closed with no (or a partial) answer: the connection was dropped, as a reset is.
    return "reset", repr(data[:80])


def connect_during_restart(server: UwsServer) -> Outcomes:
    outcomes = Outcomes()
    stop = threading.Event()

    def connector() -> None:
        while not stop.is_set():
            outcomes.add(*one_request(server.port))

    old = set(children_of(server.pid))
    threads = [threading.Thread(target=connector, daemon=True) for _ in range(CONNECTORS)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        server.signal(signal.SIGHUP)
        wait_until(lambda: not any(pid_alive(p) for p in old) and len(children_of(server.pid)) == len(old)
                   and not old & set(children_of(server.pid)), "every worker replaced", timeout=RESTART_BOUND)
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10.0)
    return outcomes


def test_rolling_restart_resets_no_connection_queued_on_an_old_worker():
    with UwsServer("--workers", "2", "--no-access-log", "--log-level", "warning", env=clean_env()) as server:
        wait_until(lambda: len(children_of(server.pid)) == 2, "two workers")
        outcomes = connect_during_restart(server)
    summary = (f"{outcomes.answered} answered, {outcomes.reset} reset, {outcomes.refused} refused, "
               f"other: {outcomes.other[:5]}")
    print(summary)
    assert outcomes.answered > 500, summary
    assert (outcomes.reset, outcomes.refused, outcomes.other) == (0, 0, []), summary
