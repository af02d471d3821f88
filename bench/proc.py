"""A process's CPU time as Linux's /proc reports it, for the bench scripts that measure a
server's CPU per message (realtime_perf.py, realtime_instructions.py)."""

from __future__ import annotations

import os
from pathlib import Path


def cpu_ticks(pid: int) -> tuple[int, int]:
    """User and system CPU time of process pid so far, in clock ticks (``SC_CLK_TCK`` a second).

    Args:
        pid: a running process's id.
    """
    # The command name, in parentheses, may hold spaces: the fields start after the last ")".
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process pid so far, in seconds.

    Args:
        pid: a running process's id.
    """
    return sum(cpu_ticks(pid)) / os.sysconf("SC_CLK_TCK")
