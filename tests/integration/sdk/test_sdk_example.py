"""examples/sdk_client.py against a real hub with a history topic: it connects, subscribes,
receives its own lines, and after the hub is killed and started again (a new epoch, since the
history is in memory) reports the gap and reloads the newest lines."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from tests.support.procutil import HOST, Process, UwsServer, wait_until

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "sdk_client.py"
SECRET = "the example's secret, long enough for HS256"


def hub(port: int = 0) -> UwsServer:
    return UwsServer("--jwt-secret", SECRET, "--log-level", "warning", "--history", "chat.*:100:300", port=port)


def test_sdk_client_example_receives_its_lines_and_reports_a_gap_after_a_restart():
    server = hub()
    try:
        env = {**os.environ, "JWT_SECRET": SECRET, "PYTHONUNBUFFERED": "1"}
        with Process([sys.executable, str(EXAMPLE), f"ws://{HOST}:{server.port}/realtime"], env=env) as example:
            wait_until(lambda: any("'line 2'" in line for line in example.stdout_lines),
                       "the example receiving its second line", timeout=15)
            lines = example.stdout_lines
            assert lines[:2] == ["[connecting]", "[connected]"], lines
            assert lines[2].startswith("subscribed to chat.lobby at epoch "), lines
            assert any(line.startswith("chat.lobby #1: {'text': 'line 1'}") for line in lines), lines

            os.kill(server.pid, signal.SIGKILL)
            server.wait(5)
            server = hub(server.port)
            wait_until(lambda: any(line.startswith("reloaded ") for line in example.stdout_lines),
                       "the example reloading after the gap", timeout=20)
            assert any("resubscribed to chat.lobby: gap" in line for line in example.stdout_lines), \
                example.stdout_lines
    finally:
        server.stop()
