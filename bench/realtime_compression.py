"""What realtime compression costs and saves: the RealtimeServer of scenario 8
(servers/uwspy_realtime.py) answering 1 KiB JSON requests (ECHO with sensor readings,
`--payload request-json`), with compression off, inflate only and on, 100 connections x 4 in flight.

A third mode negotiates permessage-deflate but leaves replies plain (a threshold above their
size): the load generator's compressed requests are still inflated, so "on" minus it is what
compressing the replies costs. Reports, per mode: replies/s, server CPU µs per reply (from the load generator, which reads
the server's /proc stat), and the bytes the server wrote per reply on the wire (frame header
included), from the server's own uws_bytes_sent_total / uws_messages_sent_total at /metrics
before and after the run.

usage: python bench/realtime_compression.py [--duration S] [--rounds N]
(needs bench/.build/loadgen: bash bench/build_loadgen.sh)
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

BENCH = Path(__file__).resolve().parent
LOADGEN = BENCH / ".build" / "loadgen"
SERVER = BENCH / "servers" / "uwspy_realtime.py"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def counters(port: int) -> dict[str, float]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    wanted = {"uws_bytes_sent_total", "uws_messages_sent_total", "uws_bytes_received_total"}
    values = {}
    for line in body.splitlines():
        name, _, value = line.partition(" ")
        if name in wanted:
            values[name] = float(value)
    return values


# mode -> server flags: no compression; permessage-deflate with replies left plain (the
# requests, which the load generator compresses, are still inflated); everything compressed.
MODES = {
    "off": [],
    "inflate only": ["--deflate", "--compression-threshold", "1000000"],
    "on": ["--deflate"],
}


def run(mode: str, duration: str) -> dict:
    port = free_port()
    deflate = mode != "off"
    argv = [sys.executable, str(SERVER), str(port), *MODES[mode]]
    server = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        token = ""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = server.stdout.readline()
            if line.startswith("token "):
                token = line.split()[1]
            if line.startswith("listening"):
                break
        before = counters(port)
        command = [str(LOADGEN), "--port", str(port), "--mode", "echo", "--server-pid", str(server.pid),
                   "--connections", "100", "--inflight", "4", "--size", "1024", "--payload", "request-json",
                   "--warmup", "1", "--duration", duration, "--path", f"/realtime?token={token}", "--skip-first", "1",
                   *(["--deflate"] if deflate else [])]
        result = json.loads(subprocess.run(command, capture_output=True, text=True, timeout=300).stdout)
        after = counters(port)
    finally:
        server.terminate()
        server.wait(10)
    sent = after["uws_messages_sent_total"] - before["uws_messages_sent_total"]
    return {
        "ok": result.get("ok"),
        "deflate_negotiated": result.get("deflate_negotiated"),
        "compressed_replies": result.get("compressed_messages_received"),
        "msgs_per_s": result["msgs_per_s"],
        "server_cpu_us_per_msg": result.get("server_cpu_us_per_msg"),
        "p99_us": result.get("latency_us", {}).get("p99"),
        "wire_bytes_out_per_msg": (after["uws_bytes_sent_total"] - before["uws_bytes_sent_total"]) / sent,
        "wire_bytes_in_per_msg": (after["uws_bytes_received_total"] - before["uws_bytes_received_total"]) / sent,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", default="3")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if not LOADGEN.exists():
        print("build the load generator first: bash bench/build_loadgen.sh", file=sys.stderr)
        return 1
    table = {}
    for mode in MODES:
        rounds = [run(mode, args.duration) for _ in range(args.rounds)]
        table[mode] = {key: statistics.median(r[key] for r in rounds) if isinstance(rounds[0][key], float) else rounds[0][key]
                       for key in rounds[0]}
        table[mode]["rounds"] = rounds
    print(json.dumps(table, indent=2))
    off, on = table["off"], table["on"]
    print("\n| compression | replies/s | server CPU µs/reply | bytes out/reply | bytes in/request |")
    print("|---|---|---|---|---|")
    for mode, row in table.items():
        print(f"| {mode} | {row['msgs_per_s']:,.0f} | {row['server_cpu_us_per_msg']:.2f} | "
              f"{row['wire_bytes_out_per_msg']:.0f} | {row['wire_bytes_in_per_msg']:.0f} |")
    print(f"\non/off: throughput x{on['msgs_per_s'] / off['msgs_per_s']:.2f}, CPU per reply "
          f"x{on['server_cpu_us_per_msg'] / off['server_cpu_us_per_msg']:.2f}, bytes out per reply "
          f"x{on['wire_bytes_out_per_msg'] / off['wire_bytes_out_per_msg']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
