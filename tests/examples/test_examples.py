"""Every program in examples/ is started as its own process on a free loopback port (--port 0),
spoken to for real (WebSocket echo, HTTP, TLS, the realtime protocol), then stopped with SIGTERM,
which each example answers with a graceful shutdown and exit status 0."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import selectors
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Optional

import jwt
import pytest
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
RECEIVE_TIMEOUT = 5.0
LISTENING = re.compile(r"listening on \w+://[\d.]+:(\d+)")


class Example:
    """One example process; ``port`` is read from its "listening on" line."""

    def __init__(self, script: str, *args: str, env: Optional[dict[str, str]] = None) -> None:
        environment = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, str(EXAMPLES / script), "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=environment,
            text=True,
        )
        self.output: list[str] = []
        self.port = self._wait_for_port()

    def _wait_for_port(self) -> int:
        assert self.process.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if not selector.select(timeout=deadline - time.monotonic()):
                    break
                line = self.process.stdout.readline()
                if not line:
                    break
                self.output.append(line)
                match = LISTENING.search(line)
                if match:
                    return int(match.group(1))
        self.process.kill()
        rest = self.process.communicate(timeout=STOP_TIMEOUT)[0]
        pytest.fail(f"the example never said where it listens; output:\n{''.join(self.output)}{rest}")

    def line_matching(self, pattern: str) -> str:
        """The first line printed so far (or next) that matches pattern."""
        assert self.process.stdout is not None
        for line in self.output:
            if re.search(pattern, line):
                return line
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            self.output.append(line)
            if re.search(pattern, line):
                return line
        pytest.fail(f"no line matching {pattern!r} in:\n{''.join(self.output)}")

    def stop(self) -> str:
        """SIGTERM, then the exit status must be 0; returns the rest of the output."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            rest = self.process.communicate(timeout=STOP_TIMEOUT)[0]
        except subprocess.TimeoutExpired:
            self.process.kill()
            rest = self.process.communicate()[0]
            pytest.fail(f"the example did not stop within {STOP_TIMEOUT} s of SIGTERM")
        output = "".join(self.output) + rest
        assert self.process.returncode == 0, f"exit status {self.process.returncode}; output:\n{output}"
        return output

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


@pytest.fixture
def start() -> Iterator:
    started: list[Example] = []

    def launch(script: str, *args: str, env: Optional[dict[str, str]] = None) -> Example:
        example = Example(script, *args, env=env)
        started.append(example)
        return example

    yield launch
    for example in started:
        example.kill()


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 30))


async def receive_json(ws) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), RECEIVE_TIMEOUT))


def http_get(port: int, path: str, method: str = "GET", body: Optional[bytes] = None,
             headers: Optional[dict[str, str]] = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=RECEIVE_TIMEOUT)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_echo_sends_text_and_binary_back(start):
    example = start("echo.py")

    async def talk() -> None:
        async with connect(f"ws://127.0.0.1:{example.port}/anything", compression="deflate") as ws:
            await ws.send("hello")
            assert await asyncio.wait_for(ws.recv(), RECEIVE_TIMEOUT) == "hello"
            await ws.send(b"\x00\x01\x02")
            assert await asyncio.wait_for(ws.recv(), RECEIVE_TIMEOUT) == b"\x00\x01\x02"

    run(talk())
    output = example.stop()
    assert "connected" in output and "a client left with 1000" in output


def test_http_routes_answer_parameters_bodies_and_404(start):
    example = start("http_routes.py")
    assert http_get(example.port, "/hello/ada?greeting=hi") == (200, b"hi ada\n")
    status, body = http_get(example.port, "/echo", "POST", b"x" * 3000, {"Content-Type": "text/plain"})
    assert (status, body) == (200, b"x" * 3000)
    status, body = http_get(example.port, "/info?a=1", headers={"X-Probe": "yes"})
    info = json.loads(body)
    assert (status, info["method"], info["url"], info["query"]) == (200, "get", "/info", "a=1")
    assert info["headers"]["x-probe"] == "yes"
    assert http_get(example.port, "/nowhere") == (404, b"nothing at /nowhere\n")
    status, _ = http_get(example.port, "/echo", "POST", b"x" * (64 * 1024 + 1))
    assert status == 413
    example.stop()


def test_chat_serves_its_page_and_broadcasts_to_every_tab(start):
    example = start("chat.py")
    status, page = http_get(example.port, "/")
    assert status == 200 and b"new WebSocket" in page and b"/realtime" in page

    async def talk() -> None:
        url = f"ws://127.0.0.1:{example.port}/realtime"
        async with connect(url) as alice, connect(url) as bob:
            for ws in (alice, bob):
                assert (await receive_json(ws))["type"] == "CONNECTED"
                await ws.send(json.dumps({"type": "SUBSCRIBE", "topic": "chat", "id": 1}))
                assert await receive_json(ws) == {"type": "SUBSCRIBED", "topic": "chat", "id": 1}
            await alice.send(json.dumps({"type": "NICK", "name": "alice", "id": 2}))
            replies = [await receive_json(alice), await receive_json(alice)]
            assert {"type": "NICK_OK", "name": "alice", "id": 2} in replies
            assert (await receive_json(bob))["data"] == {"system": "alice joined"}
            line = {"name": "alice", "text": "hi bob"}
            await alice.send(json.dumps({"type": "PUBLISH", "topic": "chat", "data": line, "echo": True}))
            for ws in (alice, bob):
                message = await receive_json(ws)
                assert (message["type"], message["data"]) == ("MESSAGE", line)
            await bob.send(json.dumps({"type": "SUBSCRIBE", "topic": "admin", "id": 3}))
            refused = await receive_json(bob)
            assert (refused["type"], refused["code"], refused["id"]) == ("ERROR", "FORBIDDEN", 3)

    run(talk())
    example.stop()


def test_asyncio_embedding_runs_coroutine_handlers_and_a_ticker(start):
    example = start("asyncio_embed.py")

    async def talk() -> None:
        async with connect(f"ws://127.0.0.1:{example.port}/ws") as ws:
            await ws.send("sleep 0.2")
            await ws.send("right away")
            received = [await asyncio.wait_for(ws.recv(), RECEIVE_TIMEOUT) for _ in range(2)]
            # The echo does not wait behind the sleeping handler.
            assert received == ["right away", "slept 0.2"]
            tick = await asyncio.wait_for(ws.recv(), RECEIVE_TIMEOUT)
            assert re.fullmatch(r"tick \d+", tick)

    run(talk())
    assert http_get(example.port, "/slow?delay=0.05") == (200, b"answered after 0.05 s\n")
    example.stop()


def test_tls_serves_wss_and_https_on_one_port(start, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )
    example = start("tls.py", "--cert", str(cert), "--key", str(key))
    context = ssl.create_default_context(cafile=str(cert))

    connection = http.client.HTTPSConnection("127.0.0.1", example.port, context=context, timeout=RECEIVE_TIMEOUT)
    connection.request("GET", "/")
    response = connection.getresponse()
    assert (response.status, response.read()) == (200, b"hello over TLS\n")
    assert connection.sock.version() in ("TLSv1.2", "TLSv1.3")
    connection.close()

    async def talk() -> None:
        async with connect(f"wss://127.0.0.1:{example.port}/", ssl=context) as ws:
            await ws.send("secret")
            assert await asyncio.wait_for(ws.recv(), RECEIVE_TIMEOUT) == "secret"

    run(talk())
    example.stop()


def test_tls_example_refuses_to_start_without_certificates(tmp_path):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("UWS_TLS_")}
    finished = subprocess.run([sys.executable, str(EXAMPLES / "tls.py"), "--port", "0"],
                              capture_output=True, text=True, env=environment, timeout=30)
    assert finished.returncode == 2 and "--cert and --key" in finished.stderr


def test_realtime_app_authenticates_replies_and_broadcasts_ticks(start):
    secret = "a test secret that is long enough for HS256 keys"
    example = start("realtime_app.py", env={"JWT_SECRET": secret})
    printed = example.line_matching(r"sample token").rsplit(" ", 1)[1].strip()
    assert jwt.decode(printed, secret, algorithms=["HS256"])["sub"] == "demo"
    token = jwt.encode({"sub": "tester", "exp": int(time.time()) + 60}, secret, algorithm="HS256")

    async def talk() -> None:
        url = f"ws://127.0.0.1:{example.port}/realtime?token={token}"
        async with connect(url) as ws:
            connected = await receive_json(ws)
            assert (connected["type"], connected["userId"]) == ("CONNECTED", "tester")
            await ws.send(json.dumps({"type": "NATURAL_LANGUAGE", "text": "hello", "id": 7}))
            assert await receive_json(ws) == {"type": "NATURAL_LANGUAGE_RESULT", "text": "HELLO", "id": 7}
            await ws.send(json.dumps({"type": "NATURAL_LANGUAGE", "text": 5, "id": 8}))
            invalid = await receive_json(ws)
            assert (invalid["code"], invalid["id"]) == ("INVALID_MESSAGE", 8)
            await ws.send(json.dumps({"type": "SUBSCRIBE", "topic": "ticks", "id": 9}))
            assert await receive_json(ws) == {"type": "SUBSCRIBED", "topic": "ticks", "id": 9}
            tick = await receive_json(ws)
            assert (tick["type"], tick["topic"], tick["from"]) == ("MESSAGE", "ticks", None)
            assert isinstance(tick["data"]["n"], int)

    run(talk())
    status, body = http_get(example.port, "/health")
    assert status == 200 and json.loads(body)["status"] == "ok"
    refused, _ = http_get(example.port, "/realtime", headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                                              "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                                                              "Sec-WebSocket-Version": "13"})
    assert refused == 401
    example.stop()
