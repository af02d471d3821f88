"""What the hostile-client tests share: memory of this process and a bystander's echo round trip."""

from __future__ import annotations

import time

from .wsclient import Op

MIB = 1024 * 1024


def rss_bytes() -> int:
    """Resident memory of this process (the server runs in it, on a thread)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def echo_latency(client, payload: bytes = b"still here") -> float:
    """Seconds one echo round trip took; fails unless the echo comes back intact."""
    started = time.monotonic()
    client.send_binary(payload)
    message = client.recv_message(timeout=2.0)
    assert message == (Op.BINARY, payload), f"bystander got {message!r}"
    return time.monotonic() - started
