"""examples/sdk_client.py against a real hub: it connects, subscribes, and receives its own lines."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tests.support.procutil import HOST, Process, UwsServer, wait_until

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "sdk_client.py"
SECRET = "the example's secret, long enough for HS256"


def test_sdk_client_example_subscribes_and_receives_its_own_lines():
    hub = UwsServer("--jwt-secret", SECRET, "--log-level", "warning")
    try:
        env = {**os.environ, "JWT_SECRET": SECRET, "PYTHONUNBUFFERED": "1"}
        with Process([sys.executable, str(EXAMPLE), f"ws://{HOST}:{hub.port}/realtime"], env=env) as example:
            wait_until(lambda: any("'line 2'" in line for line in example.stdout_lines),
                       "the example receiving its second line", timeout=15)
            lines = example.stdout_lines
            assert lines[:3] == ["[connecting]", "[connected]", "subscribed to chat"], lines
            assert any(line.startswith("connected as ") for line in lines), lines
    finally:
        hub.stop()
