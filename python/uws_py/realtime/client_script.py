"""The JavaScript client (clients/js/src/index.js) served over HTTP next to the realtime
endpoint, so a page can ``import { connect } from "/realtime/client.js"`` with no build step.

The wheel carries the file as ``uws_py/static/client.js`` (CMakeLists.txt installs it there);
a source checkout run with ``PYTHONPATH=python`` has no such copy and serves the source file
itself, so the two can never differ.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Optional

_PACKAGE = Path(__file__).resolve().parent.parent
PACKAGED = _PACKAGE / "static" / "client.js"
SOURCE = _PACKAGE.parent.parent / "clients" / "js" / "src" / "index.js"

CONTENT_TYPE = "text/javascript; charset=utf-8"
# The URL carries no version, so a browser must ask again each time (cheap: 304 by ETag)
# rather than keep running an old client after the server was upgraded.
CACHE_CONTROL = "no-cache"


def find_client_script() -> Path:
    """The client file: the packaged copy, else the source tree's. FileNotFoundError names
    both places when neither exists (a broken install)."""
    for candidate in (PACKAGED, SOURCE):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"the JavaScript client is neither at {PACKAGED} nor at {SOURCE}")


class ClientScript:
    """The GET handler of the client file: read once, answered with its ETag; a request
    whose ``If-None-Match`` names that ETag gets 304 without a body.

    Args:
        body: the file's bytes (default: :func:`find_client_script`'s file).
    """

    def __init__(self, body: Optional[bytes] = None) -> None:
        self.body = body if body is not None else find_client_script().read_bytes()
        self.etag = '"' + hashlib.sha256(self.body).hexdigest()[:32] + '"'

    def headers(self) -> list[tuple[str, str]]:
        """The headers of both answers (200 and 304)."""
        return [
            ("Content-Type", CONTENT_TYPE),
            ("Cache-Control", CACHE_CONTROL),
            ("ETag", self.etag),
            # Module scripts are fetched in CORS mode: a page on another origin may import it.
            ("Access-Control-Allow-Origin", "*"),
            ("X-Content-Type-Options", "nosniff"),
        ]

    def not_modified(self, if_none_match: Optional[str]) -> bool:
        """True when the request's ``If-None-Match`` value already names this file.

        Args:
            if_none_match: the header's value, or None.
        """
        if not if_none_match:
            return False
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return self.etag in tags or "*" in tags

    def __call__(self, res: Any, req: Any) -> str:
        """Answers one GET (an :class:`~uws_py.HttpResponse`, :class:`~uws_py.HttpRequest`
        pair); returns the status code sent ("200" or "304")."""
        fresh = self.not_modified(req.get_header("if-none-match"))
        if fresh:
            res.write_status("304 Not Modified")
        for name, value in self.headers():
            res.write_header(name, value)
        if fresh:
            res.end_without_body()
            return "304"
        res.end(self.body)
        return "200"
