"""Runs the JavaScript client's tests (unit and integration) with Node's own test runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Each test file gets 120 s; --test-force-exit ends a file whose tests are over even when a
# failed test left a reconnecting client or a server handle behind, so a failure is reported
# as a failure instead of hanging until the outer timeout. Four files at once: node runs one
# less than the machine's cores by default (one here), and the integration files mostly wait
# for their servers (45 s -> 30 s on this 2-core machine). --test-concurrency needs Node 20.10+.
NODE_TEST = ["node", "--test", "--test-force-exit", "--test-timeout=120000", "--test-concurrency=4",
             "--experimental-websocket", "clients/js/test/"]


def test_node_client_suite() -> None:
    # The server processes run on this interpreter, so they import the uws_py the tests import.
    env = dict(os.environ, UWS_PY_PYTHON=sys.executable)
    try:
        result = subprocess.run(NODE_TEST, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    except subprocess.TimeoutExpired as expired:
        output = expired.stdout.decode() if isinstance(expired.stdout, bytes) else (expired.stdout or "")
        raise AssertionError(f"node --test did not finish in 400 s; its output:\n{output[-6000:]}") from None
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout and "# pass 0" not in result.stdout
