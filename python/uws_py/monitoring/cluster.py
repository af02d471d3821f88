"""The whole server's metrics with ``--workers N``: each worker answers its peers' requests
for a snapshot over a Unix socket, the worker a scrape lands on sums them, and what dead
workers counted is kept so that no counter of the server ever goes back.

Why peers and not prometheus-client's multiprocess mode: most of our counters live in the
native core and are read at scrape time; multiprocess mode only sums its own mmap'd
``Counter`` objects, so every core counter would have to be copied into them per message.
Here nothing is done per message: a scrape asks each worker for a snapshot, taken on that
worker's loop thread (``App.defer``), so it is exact at that moment.

The directory (made by the :class:`~uws_py.supervisor.Supervisor`, removed when it stops)
holds, per worker process, ``<pid>.sock`` (its channel) and ``<pid>.json`` (the last snapshot
it took: written before any value of it is served, and every second), and ``retired.json``:
per worker index, the counters of the processes of that index that are gone, and how many
were replaced. The supervisor moves a dead process's ``<pid>.json`` into ``retired.json``
under an exclusive ``flock`` of ``lock``; a scrape reads the directory under a shared one,
so it never counts a dead process twice or not at all.

What a scrape returns: every counter is the sum over the live processes, the last
snapshots of dead ones not yet retired, and the retired counters: it never decreases, even
when a worker is SIGKILLed (what that worker counted after its last snapshot, at most about a
second's worth, is lost, never un-counted). Gauges are the live processes' only.
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import json
import logging
import os
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

from . import snapshot as snap

logger = logging.getLogger("uws_py.monitoring")

RETIRED = "retired.json"
LOCK = "lock"
# How long a scrape waits for one peer before using that peer's last persisted snapshot.
PEER_TIMEOUT = 2.0
# Seconds between the snapshots a worker persists on its own (bounds what a SIGKILL loses).
PERSIST_INTERVAL = 1.0
REQUEST = b"SNAPSHOT\n"


@dataclass(frozen=True)
class Membership:
    """This process is worker ``index`` of a supervisor whose metrics live in ``directory``."""

    directory: str
    index: int


_membership: Optional[Membership] = None


def join(directory: str, index: int) -> None:
    """Marks this (worker) process as a member; the supervisor calls it right after fork.

    Args:
        directory: the supervisor's metrics directory.
        index: the worker's index (0..N-1), stable across restarts.
    """
    global _membership
    _membership = Membership(directory, index)


def membership() -> Optional[Membership]:
    """This process's membership, or None when it is not a supervised worker."""
    return _membership


@contextmanager
def locked(directory: str, exclusive: bool) -> Iterator[None]:
    """``flock`` of the directory's lock file (released when the holder dies, too)."""
    fd = os.open(os.path.join(directory, LOCK), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def write_json(path: str, data: Any) -> None:
    """Writes ``data`` to ``path`` atomically (a temporary file renamed over it)."""
    temporary = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    os.replace(temporary, path)


def read_json(path: str) -> Any:
    """The JSON in ``path``, or None when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def query(path: str, timeout: float = PEER_TIMEOUT) -> Optional[dict[str, Any]]:
    """A peer's snapshot through its socket, or None when it does not answer in time."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(REQUEST)
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        answer = json.loads(b"".join(chunks))
        return answer if isinstance(answer, dict) and "families" in answer else None
    except (OSError, ValueError):
        return None


class WorkerChannel:
    """One worker's side: answers snapshot requests on ``<pid>.sock`` from a thread, taking
    each snapshot on the loop thread, and persists snapshots to ``<pid>.json``.

    Args:
        member: this worker's membership.
        take: builds a snapshot dict (``families``, ``topics``); runs on the loop thread.
        defer: the loop's thread-safe ``defer``.
        persist_interval: seconds between snapshots persisted without a request.
    """

    def __init__(self, member: Membership, take: Callable[[], dict[str, Any]],
                 defer: Callable[[Callable[[], None]], None], persist_interval: float = PERSIST_INTERVAL) -> None:
        self.member = member
        self.take_snapshot = take
        self.defer = defer
        self.persist_interval = persist_interval
        self.pid = os.getpid()
        self.socket_path = os.path.join(member.directory, f"{self.pid}.sock")
        self.snapshot_path = os.path.join(member.directory, f"{self.pid}.json")
        self._sequence = itertools.count(1)
        self._persist_lock = threading.Lock()
        self._persisted = 0
        self._listener: Optional[socket.socket] = None
        self._thread: Optional[threading.Thread] = None
        self._stopping = threading.Event()

    def snapshot(self) -> dict[str, Any]:
        """A snapshot of this worker, now (loop thread)."""
        taken = self.take_snapshot()
        taken.update(pid=self.pid, index=self.member.index, seq=next(self._sequence), time=time.time())
        return taken

    def snapshot_from_thread(self, timeout: float = PEER_TIMEOUT) -> Optional[dict[str, Any]]:
        """A snapshot taken on the loop thread, waited for from another thread (None when the
        loop does not run it within ``timeout``)."""
        done = threading.Event()
        box: list[dict[str, Any]] = []

        def on_loop() -> None:
            box.append(self.snapshot())
            done.set()

        self.defer(on_loop)
        # Polled rather than waited for in one go: once the loop has ended (stopping), the
        # deferred call never runs, and stop() should not wait out the whole timeout.
        deadline = time.monotonic() + timeout
        while not done.wait(0.05):
            if self._stopping.is_set() or time.monotonic() > deadline:
                return None
        return box[0]

    def persist(self, taken: dict[str, Any]) -> None:
        """Writes ``taken`` to ``<pid>.json`` unless a later snapshot is there already. Called
        before any value of ``taken`` is served."""
        with self._persist_lock:
            if taken["seq"] <= self._persisted:
                return
            try:
                write_json(self.snapshot_path, taken)
            except OSError as exc:
                if exc.errno != errno.ENOENT:  # the supervisor removed the directory: stopping
                    logger.warning("cannot persist the metrics snapshot: %s", exc)
                return
            self._persisted = taken["seq"]

    def start(self) -> None:
        """Listens on ``<pid>.sock`` and starts the thread answering and persisting."""
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.socket_path)
        listener.listen(16)
        listener.settimeout(self.persist_interval)
        self._listener = listener
        self._thread = threading.Thread(target=self._serve, name="uws-py-metrics-channel", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopping.is_set():
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                taken = self.snapshot_from_thread()
                if taken is not None:
                    self.persist(taken)
                continue
            except OSError:
                return
            with conn:
                try:
                    conn.settimeout(PEER_TIMEOUT)
                    if conn.recv(64) != REQUEST:
                        continue
                    taken = self.snapshot_from_thread()
                    if taken is None:
                        continue
                    self.persist(taken)
                    conn.sendall(json.dumps(taken).encode())
                except OSError:
                    continue

    def stop(self, final: Optional[dict[str, Any]] = None) -> None:
        """Stops answering; persists ``final`` (a last snapshot, taken once the loop ended)."""
        self._stopping.set()
        if self._listener is not None:
            self._listener.close()
        try:
            os.unlink(self.socket_path)
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(timeout=self.persist_interval + PEER_TIMEOUT)
        if final is not None:
            self.persist(final)


@dataclass
class ClusterView:
    """What a scrape sees of the whole server."""

    families: list[snap.Family]
    workers: dict[int, list[snap.Family]]
    live: list[dict[str, Any]]
    restarts: dict[int, int]
    topics: dict[str, int] = field(default_factory=dict)

    def exposition(self) -> list[snap.Family]:
        """Every family of the scrape: the server's, then the per-worker ones."""
        extra = [
            snap.gauge("uws_workers", "Worker processes that answered this scrape", [({}, len(self.live))]),
            snap.counter("uws_worker_restarts", "Worker processes replaced (died or reloaded), by worker",
                         [({"worker": str(i)}, self.restarts.get(i, 0))
                          for i in sorted(set(self.workers) | set(self.restarts))]),
        ]
        return self.families + snap.per_worker(self.workers) + extra


def single(own: dict[str, Any]) -> ClusterView:
    """The view of a server that is one process (worker 0, nothing retired)."""
    return ClusterView(own["families"], {0: own["families"]}, [own], {}, dict(own.get("topics", {})))


def gather(directory: str, own: dict[str, Any], timeout: float = PEER_TIMEOUT) -> ClusterView:
    """The whole server: ``own`` (this worker's snapshot, persisted here before use), every
    peer's (asked now), dead processes' last snapshots and the retired counters.

    Args:
        directory: the metrics directory.
        own: this worker's snapshot, taken on its loop thread.
        timeout: how long one peer may take to answer.
    """
    with locked(directory, exclusive=False):
        pids = set()
        for name in os.listdir(directory):
            stem, _, suffix = name.partition(".")
            if suffix in ("sock", "json") and stem.isdigit():
                pids.add(int(stem))
        pids.discard(own["pid"])
        retired = read_json(os.path.join(directory, RETIRED)) or {}
        live = [own]
        dead = []
        for pid in sorted(pids):
            peer = query(os.path.join(directory, f"{pid}.sock"), timeout)
            if peer is not None:
                live.append(peer)
                continue
            last = read_json(os.path.join(directory, f"{pid}.json"))
            if isinstance(last, dict) and "families" in last:
                dead.append(last)
    by_index: dict[int, list[list[snap.Family]]] = {}
    for taken in live:
        by_index.setdefault(int(taken["index"]), []).append(taken["families"])
    for taken in dead:
        by_index.setdefault(int(taken["index"]), []).append(snap.cumulative(taken["families"]))
    restarts = {}
    for index_text, entry in retired.get("workers", {}).items():
        by_index.setdefault(int(index_text), []).append(entry.get("families", []))
        restarts[int(index_text)] = int(entry.get("restarts", 0))
    workers = {index: snap.merge(parts) for index, parts in by_index.items()}
    topics: dict[str, int] = {}
    for taken in live:
        for topic, count in taken.get("topics", {}).items():
            topics[topic] = topics.get(topic, 0) + int(count)
    families = snap.merge(part for parts in by_index.values() for part in parts)
    return ClusterView(families, workers, live, restarts, topics)


def retire(directory: str, pid: int, index: int) -> None:
    """The supervisor's part when worker process ``pid`` (of ``index``) is gone: its last
    snapshot's counters move into ``retired.json``, its files go.

    Args:
        directory: the metrics directory.
        pid: the process that exited.
        index: its worker index.
    """
    with locked(directory, exclusive=True):
        path = os.path.join(directory, f"{pid}.json")
        last = read_json(path)
        retired = read_json(os.path.join(directory, RETIRED)) or {"workers": {}}
        entry = retired["workers"].setdefault(str(index), {"restarts": 0, "families": []})
        entry["restarts"] += 1
        if isinstance(last, dict) and "families" in last:
            entry["families"] = snap.merge([entry["families"], snap.cumulative(last["families"])])
        write_json(os.path.join(directory, RETIRED), retired)
        for leftover in (path, os.path.join(directory, f"{pid}.sock")):
            try:
                os.unlink(leftover)
            except OSError:
                pass
