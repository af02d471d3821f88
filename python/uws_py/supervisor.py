"""Running N worker processes on one port: restarts, graceful stop, rolling reload."""

from __future__ import annotations

import logging
import os
import select
import shutil
import signal
import sys
import tempfile
import time
from typing import Any, Callable, Optional

from . import reuseport
from .config import ConfigError, ServeConfig
from .monitoring import cluster

logger = logging.getLogger("uws_py.cli")

# The exit status of a configuration error: a worker exiting with it is not restarted.
EXIT_USAGE = 2
# Seconds a rolling restart waits for the new worker to listen, then for the old one to have
# accepted what was queued on its socket.
READY_TIMEOUT = 30.0
DRAIN_TIMEOUT = 2.0


class _Handover:
    """In a worker started by a rolling restart: where to say it listens, and the index its
    socket has in the port's reuseport group (reuseport.py)."""

    def __init__(self, ready_fd: int, index: int) -> None:
        self.ready_fd = ready_fd
        self.index = index


_handover: Optional[_Handover] = None


def worker_listening(port: int) -> None:
    """Called by a worker once it listens on ``port``. In a worker started by a rolling
    restart, steers the port's new connections to it and tells the supervisor (which then
    drains and stops the old worker); elsewhere a no-op.

    Args:
        port: the port the worker listens on.
    """
    global _handover
    handover, _handover = _handover, None
    if handover is None:
        return
    try:
        fd = reuseport.listening_socket_fd(port)
        steered = fd is not None and reuseport.steer_group_to(fd, handover.index)
    except Exception:  # the worker serves anyway; only the handover is lost
        logger.exception("steering port %d to the new worker failed", port)
        steered = False
    if not steered:
        logger.warning("cannot steer new connections of port %d to the new worker: connections queued on "
                       "the old one as it stops are reset", port)
    try:
        os.write(handover.ready_fd, b"s" if steered else b"l")
    finally:
        os.close(handover.ready_fd)


class Supervisor:
    """Runs N workers on one port (SO_REUSEPORT), restarts those that die (with backoff),
    stops them gracefully on SIGTERM/SIGINT, restarts them one by one on SIGHUP."""

    def __init__(self, config: ServeConfig, worker: Callable[[ServeConfig], int], grace: float = 10.0) -> None:
        """``config``: what every worker runs (``config.workers`` of them); ``worker(config)``:
        the body of one worker process, returning its exit status; ``grace``: seconds the
        workers get to stop before SIGKILL."""
        self.config = config
        self.worker = worker
        self.grace = grace
        self.children: dict[int, int] = {}  # pid -> worker index
        self.started: dict[int, float] = {}
        self.failures = [0] * config.workers
        self.stopping = False
        self.reload = False
        # Where the workers' metric snapshots meet (monitoring.cluster); made by run().
        self.metrics_dir: Optional[str] = None

    def spawn(self, index: int, ready_pipe: Optional[tuple[int, int]] = None) -> int:
        """Forks worker ``index``; returns its pid. ``ready_pipe``: (read, write) ends of a
        pipe the worker reports on once it listens, with new connections steered to it (a
        rolling restart: ``worker_listening``); the worker keeps only the write end, the
        supervisor only the read end."""
        pid = os.fork()
        if pid == 0:
            global _handover
            if ready_pipe is not None:
                os.close(ready_pipe[0])
                # The others listen already: this worker's socket joins the group after them.
                _handover = _Handover(ready_pipe[1], len(self.children))
            # The supervisor's handlers came along with the fork: a SIGTERM arriving before the
            # worker's server installs its own (a slow import, a broker connecting) would run
            # the supervisor's and be lost, leaving the worker running after a stop.
            for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, signal.SIG_DFL)
            if self.metrics_dir is not None:
                cluster.join(self.metrics_dir, index)
            code = 1
            try:
                code = self.worker(self.config)
            except ConfigError as exc:
                print(f"uws-py: error: {exc}", file=sys.stderr, flush=True)
                code = EXIT_USAGE
            except BaseException:
                logger.exception("worker %d failed", index)
            finally:
                os._exit(code)
        if ready_pipe is not None:
            os.close(ready_pipe[1])
        self.children[pid] = index
        self.started[pid] = time.monotonic()
        return pid

    def stop_all(self, signum: int = signal.SIGTERM) -> None:
        """Sends ``signum`` to every worker."""
        for pid in list(self.children):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def run(self) -> int:
        """Starts the workers and supervises them until they are all gone; the exit status."""
        self.metrics_dir = tempfile.mkdtemp(prefix="uws-py-metrics-")
        try:
            return self._supervise()
        finally:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def retire(self, pid: int, index: int) -> None:
        """Keeps what a worker process that is gone counted (monitoring.cluster.retire)."""
        if self.metrics_dir is not None:
            try:
                cluster.retire(self.metrics_dir, pid, index)
            except OSError as exc:
                logger.warning("cannot keep the metrics of worker %d (pid %d): %s", index, pid, exc)

    def _supervise(self) -> int:
        def on_stop(signum: int, frame: Any) -> None:
            self.stopping = True
            self.stop_all()

        def on_reload(signum: int, frame: Any) -> None:
            self.reload = True

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_reload)
        for index in range(self.config.workers):
            self.spawn(index)
        deadline: Optional[float] = None
        while self.children:
            if self.reload and not self.stopping:
                self.reload = False
                self.rolling_restart()
                continue
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                if self.stopping:
                    deadline = deadline or time.monotonic() + self.grace
                    if time.monotonic() > deadline:
                        self.stop_all(signal.SIGKILL)
                time.sleep(0.05)
                continue
            index = self.children.pop(pid, None)
            if index is None or self.stopping:
                continue
            self.retire(pid, index)
            code = os.waitstatus_to_exitcode(status)
            if code == EXIT_USAGE:
                logger.error("worker %d exited with a configuration error; not restarting", index)
                self.stopping = True
                self.stop_all()
                return EXIT_USAGE
            lived = time.monotonic() - self.started.pop(pid, time.monotonic())
            self.failures[index] = 0 if lived > 30 else self.failures[index] + 1
            backoff = min(30.0, 0.5 * (2 ** max(0, self.failures[index] - 1))) if self.failures[index] else 0.0
            logger.warning("worker %d (pid %d) exited with %d; restarting in %.1f s", index, pid, code, backoff)
            time.sleep(backoff)
            if not self.stopping:
                self.spawn(index)
        return 0

    def rolling_restart(self) -> None:
        """One worker at a time: start the new one, steer new connections to it, let the old
        one accept what was queued on its socket, then stop it; the port never closes and no
        queued connection is reset (reuseport.py)."""
        for pid, index in list(self.children.items()):
            read_end, write_end = os.pipe()
            new_pid = self.spawn(index, (read_end, write_end))
            report = self._wait_ready(read_end)
            if report == b"s":
                if not reuseport.wait_until_drained(pid, self.config.port, DRAIN_TIMEOUT):
                    logger.warning("worker %d (pid %d) still had connections queued after %.1f s",
                                   index, pid, DRAIN_TIMEOUT)
            elif report is None:
                logger.warning("new worker %d (pid %d) did not report listening; stopping the old one anyway",
                               index, new_pid)
            try:
                os.kill(pid, signal.SIGTERM)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self.children.pop(pid, None)
            self.retire(pid, index)
            logger.info("worker %d restarted", index)

    @staticmethod
    def _wait_ready(read_end: int) -> Optional[bytes]:
        """What a new worker reported on its pipe (``s``: listening with the connections
        steered to it, ``l``: listening only), None when it ended first (the pipe's end of
        file) or said nothing within READY_TIMEOUT."""
        try:
            readable, _, _ = select.select([read_end], [], [], READY_TIMEOUT)
            return (os.read(read_end, 1) or None) if readable else None
        finally:
            os.close(read_end)
