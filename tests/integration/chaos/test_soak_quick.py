"""Issue 19 item 4, quick version: bench/soak.py --quick runs the whole soak (serve --workers 2
with an AOF Redis, JWT, SDK subscribers on a history topic with zero-loss accounting, churn,
a slow consumer) for 24 s with three chaos events (kill-worker, rolling-restart,
redis-restart), and must end with nothing lost or duplicated and every server log line at
WARNING or above explained."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_quick_soak_loses_nothing_and_every_warning_is_explained():
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "soak.py"), "--quick", "--no-write"],
                            cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=180)
    output = result.stdout + result.stderr
    summary = re.search(r"^lost (\d+), duplicated (\d+), chaos events (\d+), unexplained log lines (\d+), "
                        r"problems (\d+)$", result.stdout, re.MULTILINE)
    assert summary is not None, output[-4000:]
    lost, duplicated, events, unexplained, problems = map(int, summary.groups())
    assert (lost, duplicated, unexplained, problems) == (0, 0, 0, 0), output[-4000:]
    assert events == 3, output[-4000:]
    for fault in ("kill-worker", "rolling-restart", "redis-restart"):
        assert re.search(rf"^  chaos {fault} at \d+ s: [\d.]+ s .*\S?$", result.stdout, re.MULTILINE), output[-4000:]
    assert "failed:" not in result.stdout, output[-4000:]
    # Every acknowledged publish reached every subscriber: the zero-loss summary says so too.
    assert re.search(r"^  total: \d+ deliveries, .* problems: 0$", result.stdout, re.MULTILINE), output[-4000:]
    assert result.returncode == 0, output[-4000:]
