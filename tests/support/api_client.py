"""An HTTP client of the server API (docs/reference/server-api.md) for the tests: one request
per call on a fresh connection, the answer decoded."""

from __future__ import annotations

import http.client
import json
from typing import Any, Optional

from tests.support.harness import HOST


def api_call(port: int, method: str, params: Any = None, key: Optional[str] = None, *, http_method: str = "POST",
             raw: Optional[bytes] = None, path: str = "/api", timeout: float = 5.0) -> tuple[int, dict]:
    """``(status, decoded body)`` (``{"text": ...}`` when not JSON) of ``<http_method> <path>/<method>``.

    Args: port: the server's; method: the API method; params: the JSON body (raw: the body as
    sent instead); key: the API key (None: no Authorization header); http_method: the verb.
    """
    body = raw if raw is not None else (json.dumps(params).encode() if params is not None else b"")
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"apikey {key}"
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request(http_method, f"{path}/{method}", body=body if http_method != "GET" else None,
                           headers=headers)
        response = connection.getresponse()
        data = response.read()
        is_json = response.getheader("Content-Type", "").startswith("application/json")
        return response.status, json.loads(data) if data and is_json else {"text": data.decode(errors="replace")}
    finally:
        connection.close()


def api_result(port: int, method: str, params: Any, key: str) -> dict:
    """The ``result`` of a call that must succeed."""
    status, answer = api_call(port, method, params, key)
    assert status == 200 and "result" in answer, (status, answer)
    return answer["result"]
