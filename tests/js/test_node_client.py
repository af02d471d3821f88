"""Runs the JavaScript client's tests (unit and integration) with Node's own test runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_node_client_suite() -> None:
    # The server processes run on this interpreter, so they import the uws_py the tests import.
    env = dict(os.environ, UWS_PY_PYTHON=sys.executable)
    result = subprocess.run(
        ["node", "--test", "--experimental-websocket", "clients/js/test/"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout and "# pass 0" not in result.stdout
