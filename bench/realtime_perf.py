"""Where scenario 8's server CPU goes under the bench's own load, without valgrind.

usage: python bench/realtime_perf.py [--raw] [--reply same|new] [--connections N] [--inflight K]
                                     [--seconds S] [--strace] [--record FILE] [--gc]

Starts scenario 8's server (bench/servers/uwspy_realtime.py: RealtimeServer with JWT, rate
limit, handler metrics, an ECHO handler; `--reply new` makes the handler return a new dict) or,
with --raw, scenario 1's raw App echo (bench/servers/uwspy_echo.py), drives it with the load
generator in scenario 8's shape (default 100 connections x 16 in flight, 64 B requests) and,
over the middle of the load, attaches to the server:

- `perf stat` with the software events this machine has (task-clock, context switches, page
  faults; a VM without hardware counters: no cycles, instructions or cache misses);
- with --strace, `strace -c -f` for one second instead of perf stat (it slows the server, so
  only its syscalls per message are read from that run, not its CPU);
- with --record FILE, `perf record -e cpu-clock -g` into FILE (read with `perf report -i FILE`);
- with --gc, the server counts the collections of each generation through gc.callbacks and
  the time spent in them, printed when it stops.

Every figure is divided by the messages the load generator counted in the same window (its
msg/s times the window). Times are noisy on a shared machine; compare runs made one after the
other.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proc import cpu_seconds, cpu_ticks  # noqa: E402

BENCH = Path(__file__).resolve().parent

# Run as the server's __main__ with --gc: counts collections, prints them at SIGTERM.
GC_WRAPPER = r"""
import gc, runpy, signal, sys, time
counts = [0, 0, 0]
spent = [0.0]
started = [0.0]
def callback(phase, info):
    if phase == "start":
        started[0] = time.perf_counter()
    else:
        counts[info["generation"]] += 1
        spent[0] += time.perf_counter() - started[0]
gc.callbacks.append(callback)
def stop(signum, frame):
    print(f"gc collections {counts[0]} {counts[1]} {counts[2]} seconds {spent[0]:.6f}", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
def mark(signum, frame):
    print(f"gc mark {counts[0]} {counts[1]} {counts[2]} seconds {spent[0]:.6f}", flush=True)
signal.signal(signal.SIGUSR1, mark)
script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
"""

NEW_REPLY_SERVER = r"""
import runpy, sys
import uws_py
original = uws_py.RealtimeServer.on
def on(self, kind, *args, **kwargs):
    register = original(self, kind, *args, **kwargs)
    def wrap(function):
        def echo(client, message):
            return {"type": "ECHO", "data": message["data"]}
        return register(echo)
    return wrap
uws_py.RealtimeServer.on = on
"""


def process_counts(pid: int) -> dict[str, int]:
    """User and system CPU ticks, read syscalls (/proc/PID/io syscr: read() on the sockets) and context switches so far."""
    user, system = cpu_ticks(pid)
    counts = {"user ticks": user, "system ticks": system}
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        key, value = line.split(":")
        if key == "syscr":
            counts["read syscalls"] = int(value)
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
            counts[key] = int(value)
    return counts


def main() -> None:
    """Runs one server under the load and prints its figures per message."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raw", action="store_true", help="the raw App echo instead of RealtimeServer")
    parser.add_argument("--reply", choices=("same", "new"), default="same", help="what the ECHO handler returns")
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--inflight", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=4.0, help="measured window (the load runs 2 s longer)")
    parser.add_argument("--strace", action="store_true", help="syscall counts (strace -c) for 1 s instead of perf stat")
    parser.add_argument("--record", type=Path, help="perf record -g into this file")
    parser.add_argument("--gc", action="store_true", help="count the server's garbage collections")
    args = parser.parse_args()

    script = BENCH / "servers" / ("uwspy_echo.py" if args.raw else "uwspy_realtime.py")
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "server.log"
        command = [sys.executable]
        if args.reply == "new" and not args.raw:
            wrapper = Path(folder) / "new_reply.py"
            wrapper.write_text(NEW_REPLY_SERVER + GC_WRAPPER if args.gc else
                               NEW_REPLY_SERVER + "sys.argv = sys.argv[1:]\nrunpy.run_path(sys.argv[0], run_name='__main__')\n")
            command.append(str(wrapper))
        elif args.gc:
            wrapper = Path(folder) / "gc_wrapper.py"
            wrapper.write_text(GC_WRAPPER)
            command.append(str(wrapper))
        command += [str(script), "0"]
        with open(log, "w") as log_file:
            server = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while "listening" not in log.read_text():
                if server.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"the server did not start: {log.read_text()[-500:]}")
                time.sleep(0.2)
            lines = log.read_text().split("\n")
            port = next(line.split()[1] for line in lines if line.startswith("listening"))
            target = []
            if not args.raw:
                token = next(line.split()[1] for line in lines if line.startswith("token"))
                target = ["--path", f"/realtime?token={token}", "--skip-first", "1"]
            window = 1.0 if args.strace else args.seconds
            loadgen = subprocess.Popen(
                [str(BENCH / ".build" / "loadgen"), "--port", port, "--mode", "echo",
                 "--connections", str(args.connections), "--inflight", str(args.inflight), "--size", "64",
                 "--payload", "request", "--warmup", "1", "--duration", str(window + 1.0),
                 "--server-pid", str(server.pid), *target],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(1.5)  # connected and warmed up
            if args.gc:
                os.kill(server.pid, signal.SIGUSR1)
            cpu_before = cpu_seconds(server.pid)
            counts_before = process_counts(server.pid)
            if args.strace:
                watcher = ["strace", "-c", "-f", "-p", str(server.pid)]
            elif args.record:
                watcher = ["perf", "record", "-e", "cpu-clock", "-g", "-o", str(args.record), "-p", str(server.pid)]
            else:
                watcher = ["perf", "stat", "-x", ",", "-e", "task-clock,context-switches,cpu-migrations,page-faults",
                           "-p", str(server.pid)]
            watch = subprocess.Popen(watcher, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(window)
            watch.send_signal(signal.SIGINT)
            _, watched = watch.communicate(timeout=60)
            cpu = cpu_seconds(server.pid) - cpu_before
            counts_after = process_counts(server.pid)
            if args.gc:
                os.kill(server.pid, signal.SIGUSR1)
            out, err = loadgen.communicate(timeout=120)
            result = json.loads(out)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        text = log.read_text()
    messages = result["msgs_per_s"] * window
    name = "raw App echo" if args.raw else f"RealtimeServer ECHO, reply {args.reply}"
    print(f"{name}: {args.connections} x {args.inflight}, {result['msgs_per_s']:.0f} msg/s, "
          f"server CPU {cpu / messages * 1e6:.3f} µs/msg over {window:.1f} s (/proc), "
          f"loadgen's whole-run figure {result['server_cpu_us_per_msg']:.3f} µs/msg, "
          f"other load {result['other_cpu_cores']:.2f} cores")
    for key, value in counts_after.items():
        change = value - counts_before[key]
        if key.endswith("ticks"):
            print(f"  {key.split()[0]} CPU: {change / os.sysconf('SC_CLK_TCK') / messages * 1e6:.3f} µs per message (/proc)")
            continue
        print(f"  {key}: {change}, {messages / change if change else 0:.1f} messages per one (/proc)")
    if args.strace:
        for line in watched.splitlines():
            fields = line.split()
            if len(fields) >= 5 and fields[0][0].isdigit() and fields[-1] != "total":
                calls = int(fields[3])
                print(f"  {fields[-1]}: {calls} calls, {calls / messages:.4f} per message")
    elif not args.record:
        for line in watched.splitlines():
            fields = line.split(",")
            if len(fields) > 3 and fields[0] and fields[0][0].isdigit():
                value = float(fields[0])
                per = value / messages
                unit = "ms" if fields[2] == "task-clock" else ""
                print(f"  {fields[2]}: {value:.1f}{unit}, {per * (1e3 if unit else 1):.4g}{' µs' if unit else ''} per message")
    if args.gc:
        marks = re.findall(r"^gc mark (\d+) (\d+) (\d+) seconds ([\d.]+)", text, re.M)
        if len(marks) >= 2:
            first, last = marks[0], marks[-1]
            counts = [int(last[i]) - int(first[i]) for i in range(3)]
            spent = float(last[3]) - float(first[3])
            print(f"  gc collections in the window: gen0 {counts[0]}, gen1 {counts[1]}, gen2 {counts[2]} "
                  f"({sum(counts) / messages * 1e6:.2f} per million messages), {spent * 1e6 / messages:.4f} µs per message")


if __name__ == "__main__":
    main()
