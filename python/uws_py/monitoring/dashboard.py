"""The live dashboard: a page (HTML, JS and CSS shipped in the package, nothing from
elsewhere) that polls ``<path>/data`` every second, and that JSON endpoint, which needs the
dashboard token as ``Authorization: Bearer <token>``.

The page and its two assets hold no data and are served to anyone; the figures are the
whole server's (every worker, :mod:`.cluster`), computed by :mod:`.figures` as the periodic
report computes them.
"""

from __future__ import annotations

import hmac
import html
import json
import math
import time
from importlib import resources
from typing import Any, Callable

from . import figures
from .cluster import ClusterView

# The topics the page lists.
TOP_TOPICS_SHOWN = 10
# The shortest dashboard token accepted: it guards the server's figures like an API key.
MIN_TOKEN_LENGTH = 16

ASSETS = {
    "": ("dashboard.html", "text/html; charset=utf-8"),
    "/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
}


def check_token(token: str) -> str:
    """``token`` when it is long enough to guard the figures; ValueError otherwise."""
    if not isinstance(token, str) or len(token) < MIN_TOKEN_LENGTH:
        raise ValueError(f"dashboard_token must be a string of at least {MIN_TOKEN_LENGTH} characters")
    return token


def asset(name: str) -> bytes:
    """One of the page's files, from the package."""
    return resources.files(__package__).joinpath("static", name).read_bytes()


def data(view: ClusterView, now: float) -> dict[str, Any]:
    """The JSON the page polls: the server's totals, latency by type, top topics, workers.

    Args:
        view: the whole server, as a scrape sees it.
        now: the wall-clock time of the view (seconds).
    """
    server = figures.figures(view.families)
    # A quantile past the last finite bucket is inf, which JSON has not: null ("over 2.5 s").
    latency = {kind: {key: (value if math.isfinite(value) else None) for key, value in row.items()}
               for kind, row in server.pop("latency").items()}
    pids = {int(taken["index"]): int(taken["pid"]) for taken in view.live}
    workers = []
    for index, families in sorted(view.workers.items()):
        worker = figures.figures(families)
        workers.append({
            "worker": str(index),
            "pid": pids.get(index),
            "live": index in pids,
            "connections": worker["connections"],
            "messages_in": worker["messages_in"],
            "messages_out": worker["messages_out"],
            "restarts": view.restarts.get(index, 0),
        })
    topics = sorted(view.topics.items(), key=lambda item: (-item[1], item[0]))[:TOP_TOPICS_SHOWN]
    return {"time": now, "totals": server, "latency": latency, "topics": topics, "workers": workers}


class Dashboard:
    """The dashboard's routes on an App.

    Args:
        token: the bearer token ``<path>/data`` needs.
        view: ``view(respond)`` calls ``respond(ClusterView)`` on the loop thread
            (:meth:`~uws_py.monitoring.endpoint.Monitoring.view`).
        access_log: ``access_log(remote, method, url, status)``.
    """

    def __init__(self, token: str, view: Callable[[Callable[[ClusterView], None]], None],
                 access_log: Callable[[str, str, str, str], None]) -> None:
        self.token = check_token(token).encode()
        self.view = view
        self.access_log = access_log
        self.assets = {suffix: (asset(name), content_type) for suffix, (name, content_type) in ASSETS.items()}

    def install(self, app: Any, path: str) -> None:
        """Adds ``path`` (the page), its assets and ``path/data`` to ``app``."""
        for suffix, (body, content_type) in self.assets.items():
            if suffix == "":
                body = body.replace(b"__BASE__", html.escape(path).encode())
            app.get(path + suffix, self._static(body, content_type))
        app.get(path + "/data", self.data_route)

    def _static(self, body: bytes, content_type: str) -> Callable[[Any, Any], None]:
        def serve(res: Any, req: Any) -> None:
            self.access_log(res.get_remote_address(), "GET", req.get_url(), "200")
            res.write_header("Content-Type", content_type).write_header("Cache-Control", "no-cache").end(body)

        return serve

    def authorized(self, header: str) -> bool:
        """Whether an Authorization header value carries the token."""
        scheme, _, given = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token)

    def data_route(self, res: Any, req: Any) -> None:
        """GET <path>/data: the figures as JSON, or 401 without the token."""
        remote, url = res.get_remote_address(), req.get_url()
        if not self.authorized(req.get_header("authorization") or ""):
            self.access_log(remote, "GET", url, "401")
            res.write_status("401 Unauthorized").write_header("WWW-Authenticate", 'Bearer realm="uws-py dashboard"')
            res.write_header("Content-Type", "application/json").end(b'{"error": "dashboard token required"}')
            return
        res.on_aborted(lambda: None)

        def respond(view: ClusterView) -> None:
            if res.aborted:
                return
            self.access_log(remote, "GET", url, "200")
            body = json.dumps(data(view, time.time()), allow_nan=False, default=str)
            res.write_header("Content-Type", "application/json").write_header("Cache-Control", "no-store").end(body)

        self.view(respond)
