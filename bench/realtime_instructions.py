"""Instructions per realtime message, counted by valgrind's callgrind: repeatable on a shared,
loaded machine where times are not.

usage: python bench/realtime_instructions.py [--python-path | --raw] [--ping] [--seconds N] [--keep FILE]

Runs scenario 8's server (RealtimeServer with JWT, rate limit, handler metrics and an ECHO
handler, as bench/servers/uwspy_realtime.py) under callgrind, collecting only inside
uws::WebSocket::onMessage: the realtime layer's whole work per message, from the frame to the
reply queued in the cork buffer (the sendmsg that flushes it, once per read, is not counted).
The load generator drives it for N seconds; the instructions are divided by the ECHO handler's
exact call count. --python-path mounts Dispatcher.on_message (the Python path) instead of the
native handler, for comparison; --raw measures scenario 1's server instead (a raw App whose
Python handler sends each message back), the floor the realtime layer adds to. --ping sends
scenario 9's `{"type":"PING","id":N}` instead (the realtime server answers PONG without a
handler; the raw App echoes it), divided by the core's count of messages received. Needs valgrind.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
SECRET = "bench-secret-bench-secret-bench-secret"


def serve_raw() -> None:
    """Scenario 1's raw echo (run under valgrind by main); prints `calls N` when stopped."""
    from uws_py import App

    calls = 0

    def message(ws, data, opcode):
        nonlocal calls
        calls += 1
        ws.send(data, opcode, False)

    app = App().ws("/*", {"message": message, "idle_timeout": 0})
    app.listen(0)
    print("token -", flush=True)
    print(f"listening {app.port}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: app.close())
    app.run()
    print(f"calls {calls}", flush=True)
    print(f"received {app.stats()['messages_in']}", flush=True)


def serve(python_path: bool) -> None:
    """The server (run under valgrind by main); prints `calls N` when stopped."""
    import jwt

    from uws_py import JWTAuth, RateLimit, RealtimeServer
    from uws_py.realtime.dispatch import Dispatcher

    if python_path:
        Dispatcher.native_handler = lambda self: self.on_message  # type: ignore[method-assign]
    server = RealtimeServer(path="/realtime", auth=JWTAuth(secret=SECRET),
                            rate_limit=RateLimit(messages=10_000_000, per_seconds=1), idle_timeout=0)

    @server.on("ECHO")
    def echo(client, message):
        return message

    server.listen(port=0, host="127.0.0.1")
    token = jwt.encode({"sub": "bench", "exp": int(time.time()) + 3600}, SECRET, algorithm="HS256")
    print(f"token {token}", flush=True)
    print(f"listening {server.port}", flush=True)
    server.run_forever()
    print(f"calls {server.router.get('ECHO').calls}", flush=True)
    print(f"received {server.app.stats()['messages_in']}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python-path", action="store_true", help="measure Dispatcher.on_message instead")
    parser.add_argument("--raw", action="store_true", help="measure the raw App echo instead")
    parser.add_argument("--ping", action="store_true", help="PING requests (scenario 9) instead of ECHO")
    parser.add_argument("--seconds", type=float, default=5.0, help="load generator duration")
    parser.add_argument("--keep", type=Path, help="copy the callgrind output here (for callgrind_annotate)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_raw() if args.raw else serve(args.python_path)
        return
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "callgrind.out"
        log = Path(folder) / "server.log"
        command = ["valgrind", "--tool=callgrind", "--toggle-collect=uws::WebSocket::onMessage*",
                   f"--callgrind-out-file={out}", sys.executable, __file__, "--serve"]
        if args.python_path:
            command.append("--python-path")
        if args.raw:
            command.append("--raw")
        with open(log, "w") as log_file:
            server = subprocess.Popen(command, stdout=log_file, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 180
            while "listening" not in log.read_text():
                if server.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"the server did not start: {log.read_text()[-500:]}")
                time.sleep(0.5)
            lines = log.read_text().split("\n")
            port = next(line.split()[1] for line in lines if line.startswith("listening"))
            token = next(line.split()[1] for line in lines if line.startswith("token"))
            target = [] if args.raw else ["--path", f"/realtime?token={token}", "--skip-first", "1"]
            payload = ["--payload", "ping", *([] if args.raw else ["--reply", "pong"])] if args.ping else \
                ["--size", "64", "--payload", "request"]
            loadgen = subprocess.run(
                [str(BENCH / ".build" / "loadgen"), "--port", port, "--mode", "echo", "--connections", "10",
                 "--inflight", "8", *payload, "--warmup", "1",
                 "--duration", str(args.seconds), *target],
                capture_output=True, text=True, timeout=300)
            received = json.loads(loadgen.stdout)["messages"]
        finally:
            os.kill(server.pid, signal.SIGTERM)
            server.wait(timeout=120)
        # PINGs reach no handler of ours: the core's count of messages received stands in.
        calls = int(re.search(r"^received (\d+)" if args.ping else r"^calls (\d+)", log.read_text(), re.M).group(1))
        totals = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.M)
        instructions = int(totals.group(1))
        if args.keep:
            shutil.copyfile(out, args.keep)
    path = ("raw App echo" if args.raw else "Dispatcher.on_message (Python)" if args.python_path
            else "RealtimeDispatch (native)") + (", PING" if args.ping else "")
    print(f"{path}: {calls} messages ({received} counted by the load generator), "
          f"{instructions} instructions in onMessage, {instructions / calls:.0f} per message")


if __name__ == "__main__":
    main()
