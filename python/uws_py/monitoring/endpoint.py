"""The monitoring routes of a RealtimeServer: /metrics for one process or, in a supervised
worker, for the whole server (:mod:`.cluster`), answered without blocking the loop."""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Callable, Optional

from . import cluster
from . import snapshot as snap
from .topics import TopicSubscribers

logger = logging.getLogger("uws_py.monitoring")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Monitoring:
    """Snapshots of this process and the view of the whole server.

    Args:
        app: the :class:`~uws_py.app.App` (``defer``, routes).
        registry: the realtime layer's prometheus-client registry.
        access_log: ``access_log(remote, method, url, status)``.
        client_address: ``client_address(res, req)``, the address the access log names (the
            forwarded one behind a trusted proxy); the peer's by default.
    """

    def __init__(self, app: Any, registry: Any, access_log: Callable[[str, str, str, str], None],
                 client_address: Optional[Callable[[Any, Any], str]] = None) -> None:
        self.app = app
        self.registry = registry
        self.access_log = access_log
        self.client_address = client_address or (lambda res, req: res.get_remote_address())
        self.topics = TopicSubscribers()
        self.channel: Optional[cluster.WorkerChannel] = None

    def take(self) -> dict[str, Any]:
        """This process's snapshot (loop thread): its families and its top topics."""
        return {"families": snap.take(self.registry), "topics": self.topics.top()}

    def start(self) -> None:
        """In a supervised worker, opens the channel its peers ask for snapshots."""
        member = cluster.membership()
        if member is not None and self.channel is None:
            self.channel = cluster.WorkerChannel(member, self.take, self.app.defer)
            self.channel.start()

    def stop(self) -> None:
        """Closes the channel, persisting a last snapshot (after the loop ended)."""
        if self.channel is not None:
            channel, self.channel = self.channel, None
            channel.stop(final=channel.snapshot())

    def view(self, respond: Callable[[cluster.ClusterView], None]) -> None:
        """Calls ``respond(view)`` on the loop thread with the whole server's view: at once in
        a single process, after asking the peers (on a thread) in a supervised worker.

        Args:
            respond: receives the :class:`~uws_py.monitoring.cluster.ClusterView`.
        """
        channel = self.channel
        if channel is None:
            own = self.take()
            own.update(pid=os.getpid(), index=0)
            respond(cluster.single(own))
            return
        own = channel.snapshot()
        directory = channel.member.directory

        def collect() -> None:
            channel.persist(own)
            try:
                result = cluster.gather(directory, own)
            except Exception:  # the scrape still gets this worker's figures
                logger.exception("cannot gather the other workers' metrics")
                result = cluster.single(own)
            self.app.defer(lambda: respond(result))

        threading.Thread(target=collect, name="uws-py-metrics-gather", daemon=True).start()

    def metrics_route(self, res: Any, req: Any) -> None:
        """GET /metrics: the Prometheus text of the whole server."""
        remote, url = self.client_address(res, req), req.get_url()
        res.on_aborted(lambda: None)

        def respond(result: cluster.ClusterView) -> None:
            if res.aborted:
                return
            self.access_log(remote, "GET", url, "200")
            res.write_header("Content-Type", CONTENT_TYPE).end(snap.render(result.exposition()))

        self.view(respond)
