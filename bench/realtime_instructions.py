"""Instructions per realtime message, counted by valgrind's callgrind: repeatable on a shared,
loaded machine where times are not.

usage: python bench/realtime_instructions.py [--python-path | --raw] [--message echo|ping|publish|publish-none|subscribe|batch]
                                            [--reply same|new] [--seconds N] [--count N] [--keep FILE]
                                            [--from-frame]

Runs scenario 8's server (RealtimeServer with JWT, rate limit, handler metrics and an ECHO
handler, as bench/servers/uwspy_realtime.py) under callgrind, collecting only inside
uws::WebSocket::onMessage: the realtime layer's whole work per message, from the frame to the
reply queued in the cork buffer (the sendmsg that flushes it, once per read, is not counted).
The load generator drives it for N seconds; the instructions are divided by the ECHO handler's
exact call count. --reply picks what the ECHO handler returns: `same` (the default, as the bench's
server) the message itself, `new` a dict made per call, {"type": "ECHO", "data": message["data"]}
(the common handler, whose reply gets the request's id added; its bytes differ from the
request's, so the load generator counts the replies as mismatches, which this run ignores).
--python-path mounts Dispatcher.on_message (the Python path) instead of the native handler, for
comparison; --raw measures scenario 1's server instead (a raw App whose
Python handler sends each message back), the floor the realtime layer adds to. Needs valgrind.

--message picks the request (echo is the default and uses the load generator as above; the
others use a small websockets client in this process, --count requests in all, 8 in flight on
each of 4 connections, every wait bounded by a timeout so that it stops by itself):
  ping       {"type":"PING","id":N}                         -> PONG
  publish    {"type":"PUBLISH","topic":"bench","data":..,"id":N} -> PUBLISHED, and one MESSAGE to
             a fifth connection subscribed to "bench" (the fan-out of one delivery included)
  publish-none  the same PUBLISH to "bench/none", a topic nobody subscribes to -> PUBLISHED
  subscribe  SUBSCRIBE and UNSUBSCRIBE of one topic in turn, with ids -> SUBSCRIBED / UNSUBSCRIBED
  batch      {"type":"BATCH","id":N,"messages":[4 x {"type":"PING","id":I}]} -> one BATCH of 4 PONGs
             (counted per frame: divide by 4 for a PING in it)
The instructions are then divided by the number of those requests (the few SUBSCRIBEs that set
up the publish run are counted in the total but not in the divisor: 1 in --count / 1 or less).

--from-frame collects inside uws::WebSocket::onData instead: the frames' parse, unmasking and
UTF-8 check of the bytes read are counted too (still not the read or the sendmsg), so the core's
share of a message shows beside the realtime layer's.

--cpu runs the server without valgrind and prints its CPU time (user + system, from /proc)
over the load, per message instead: a time, so noisy on a shared machine, and with the
websockets client's few messages per loop iteration it includes a sendmsg per reply or so.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proc import cpu_seconds  # noqa: E402

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


def serve(python_path: bool, reply: str) -> None:
    """The server (run under valgrind by main); prints `calls N` when stopped."""
    import jwt

    from uws_py import JWTAuth, RateLimit, RealtimeServer
    from uws_py.realtime.dispatch import Dispatcher

    if python_path:
        Dispatcher.native_handler = lambda self: self.on_message  # type: ignore[method-assign]
    server = RealtimeServer(path="/realtime", auth=JWTAuth(secret=SECRET),
                            rate_limit=RateLimit(messages=10_000_000, per_seconds=1), idle_timeout=0)

    if reply == "new":
        @server.on("ECHO")
        def echo(client, message):
            return {"type": "ECHO", "data": message["data"]}
    else:
        @server.on("ECHO")
        def echo(client, message):
            return message

    server.listen(port=0, host="127.0.0.1")
    token = jwt.encode({"sub": "bench", "exp": int(time.time()) + 3600}, SECRET, algorithm="HS256")
    print(f"token {token}", flush=True)
    print(f"listening {server.port}", flush=True)
    server.run_forever()
    print(f"calls {server.router.get('ECHO').calls}", flush=True)


CLIENT_CONNECTIONS = 4
CLIENT_INFLIGHT = 8
CLIENT_TIMEOUT = 60.0  # seconds one reply may take under valgrind before the run is abandoned


def request(kind: str, number: int) -> str:
    """The number-th request of a --message run."""
    if kind == "ping":
        return f'{{"type":"PING","id":{number}}}'
    if kind == "batch":
        items = ",".join(f'{{"type":"PING","id":{item}}}' for item in range(1, 5))
        return f'{{"type":"BATCH","id":{number},"messages":[{items}]}}'
    if kind in ("publish", "publish-none"):
        topic = "bench" if kind == "publish" else "bench/none"
        return f'{{"type":"PUBLISH","topic":"{topic}","data":{{"seq":{number},"text":"abcdefghij"}},"id":{number}}}'
    verb = "SUBSCRIBE" if number % 2 == 0 else "UNSUBSCRIBE"
    return f'{{"type":"{verb}","topic":"bench/{number % 16 // 2}","id":{number}}}'


def drive(port: str, token: str, kind: str, count: int) -> int:
    """Sends count requests of kind over CLIENT_CONNECTIONS connections and waits for every
    reply; returns the replies received. Raises TimeoutError when the server stops answering."""
    from websockets.sync.client import connect

    url = f"ws://127.0.0.1:{port}/realtime?token={token}"
    received = [0] * CLIENT_CONNECTIONS
    failures: list[BaseException] = []
    subscriber: Any = None
    stack = contextlib.ExitStack()
    if kind == "publish":
        subscriber = stack.enter_context(connect(url, open_timeout=CLIENT_TIMEOUT, max_size=None, ping_interval=None,
                                            compression=None))
        subscriber.recv(timeout=CLIENT_TIMEOUT)  # CONNECTED
        subscriber.send('{"type":"SUBSCRIBE","topic":"bench","id":"s"}')
        if '"SUBSCRIBED"' not in subscriber.recv(timeout=CLIENT_TIMEOUT):
            raise RuntimeError("the subscriber was not subscribed")

    def one(index: int, share: int) -> None:
        try:
            with connect(url, open_timeout=CLIENT_TIMEOUT, max_size=None, ping_interval=None,
                                            compression=None) as ws:
                ws.recv(timeout=CLIENT_TIMEOUT)  # CONNECTED
                sent = 0
                while sent < min(CLIENT_INFLIGHT, share):
                    ws.send(request(kind, index * share + sent))
                    sent += 1
                while received[index] < share:
                    ws.recv(timeout=CLIENT_TIMEOUT)
                    received[index] += 1
                    if sent < share:
                        ws.send(request(kind, index * share + sent))
                        sent += 1
        except BaseException as exc:  # reported by the caller
            failures.append(exc)

    share = count // CLIENT_CONNECTIONS
    delivered = [0]

    def watch() -> None:
        # Read as the deliveries come: a subscriber that lets them pile up would make the
        # server buffer them (backpressure), a cost that is not the publish's.
        try:
            while delivered[0] < share * CLIENT_CONNECTIONS:
                subscriber.recv(timeout=CLIENT_TIMEOUT)
                delivered[0] += 1
        except BaseException as exc:  # reported by the caller
            failures.append(exc)

    threads = [threading.Thread(target=one, args=(index, share)) for index in range(CLIENT_CONNECTIONS)]
    if subscriber is not None:
        threads.append(threading.Thread(target=watch))
    with stack:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(CLIENT_TIMEOUT * 4)
    if failures or any(thread.is_alive() for thread in threads):
        raise RuntimeError(f"the client did not finish: {failures[:1]}")
    return sum(received)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python-path", action="store_true", help="measure Dispatcher.on_message instead")
    parser.add_argument("--raw", action="store_true", help="measure the raw App echo instead")
    parser.add_argument("--message", choices=("echo", "ping", "publish", "publish-none", "subscribe", "batch"), default="echo",
                        help="the request measured (default: the ECHO handler)")
    parser.add_argument("--reply", choices=("same", "new"), default="same",
                        help="the ECHO handler returns the message (same) or a new dict (new)")
    parser.add_argument("--seconds", type=float, default=5.0, help="load generator duration (echo)")
    parser.add_argument("--count", type=int, default=4000, help="requests sent (ping, publish, subscribe)")
    parser.add_argument("--cpu", action="store_true", help="server CPU µs per message, without valgrind")
    parser.add_argument("--keep", type=Path, help="copy the callgrind output here (for callgrind_annotate)")
    parser.add_argument("--from-frame", action="store_true",
                        help="count from the frame's parse (uws::WebSocket::onData) instead of onMessage")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw and args.message != "echo":
        parser.error("--raw measures the echo only")
    if args.serve:
        serve_raw() if args.raw else serve(args.python_path, args.reply)
        return
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "callgrind.out"
        log = Path(folder) / "server.log"
        collected = "uws::WebSocket::onData*" if args.from_frame else "uws::WebSocket::onMessage*"
        command = [] if args.cpu else ["valgrind", "--tool=callgrind", f"--toggle-collect={collected}",
                                       f"--callgrind-out-file={out}"]
        command += [sys.executable, __file__, "--serve"]
        if args.python_path:
            command.append("--python-path")
        if args.raw:
            command.append("--raw")
        command += ["--reply", args.reply]
        with open(log, "w") as log_file:
            server = subprocess.Popen(command, stdout=log_file, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 600  # a loaded machine: python under valgrind starts slowly
            while "listening" not in log.read_text():
                if server.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"the server did not start: {log.read_text()[-500:]}")
                time.sleep(0.5)
            lines = log.read_text().split("\n")
            port = next(line.split()[1] for line in lines if line.startswith("listening"))
            token = next(line.split()[1] for line in lines if line.startswith("token"))
            cpu_before = cpu_seconds(server.pid)
            if args.message == "echo":
                target = [] if args.raw else ["--path", f"/realtime?token={token}", "--skip-first", "1"]
                loadgen = subprocess.run(
                    [str(BENCH / ".build" / "loadgen"), "--port", port, "--mode", "echo", "--connections", "10",
                     "--inflight", "8", "--size", "64", "--payload", "request", "--warmup", "1",
                     "--duration", str(args.seconds), *target],
                    capture_output=True, text=True, timeout=300)
                received = json.loads(loadgen.stdout)["messages"]
            else:
                received = drive(port, token, args.message, args.count)
            cpu = cpu_seconds(server.pid) - cpu_before
        finally:
            os.kill(server.pid, signal.SIGTERM)
            server.wait(timeout=120)
        calls = (int(re.search(r"^calls (\d+)", log.read_text(), re.M).group(1)) if args.message == "echo"
                 else received)
        if args.cpu:
            instructions = 0
        else:
            instructions = int(re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.M).group(1))
        if args.keep and not args.cpu:
            shutil.copyfile(out, args.keep)
    path = ("raw App echo" if args.raw else "Dispatcher.on_message (Python)" if args.python_path
            else "RealtimeDispatch (native)")
    if args.message == "echo" and not args.raw:
        path += f", reply {args.reply}"
    if args.cpu:
        print(f"{path}, {args.message}: {calls} messages ({received} answers counted by the client), "
              f"server CPU {cpu:.3f} s, {cpu / calls * 1e6:.2f} µs per message")
        return
    print(f"{path}, {args.message}: {calls} messages ({received} answers counted by the client), "
          f"{instructions} instructions in {'onData' if args.from_frame else 'onMessage'}, {instructions / calls:.0f} per message")


if __name__ == "__main__":
    main()
