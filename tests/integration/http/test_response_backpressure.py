"""HTTP response backpressure (issue 12): res.write() says when the client is behind,
res.try_end() sends without buffering, res.on_writable() resumes, res.get_write_offset() and
res.close(); a large response to a slow reader streams with bounded memory."""

from __future__ import annotations

import hashlib
import os
import queue
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.harness import Server, wait_for
from tests.support.streaming_server import body_chunks
from tests.support.wsclient import raw_http

REPO = Path(__file__).resolve().parents[3]
MIB = 1024 * 1024
TOTAL = 200 * MIB
SLOW_RATE = 1 * MIB  # bytes per second while the client is slow
SLOW_SECONDS = 4.0
# The server's RSS may grow this much over its value when the response started: the body is
# 200 MiB, so a server that buffered what the client did not take yet would be far past it.
RSS_BOUND = 8 * MIB


def rss_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def expected_digest(total: int) -> str:
    digest = hashlib.sha256()
    for chunk in body_chunks(total):
        digest.update(chunk)
    return digest.hexdigest()


class ChunkedDecoder:
    """Incremental decoding of a chunked body; feed() returns the body bytes in data."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.remaining = 0  # of the current chunk, then its CRLF
        self.in_data = False
        self.finished = False

    def feed(self, data: bytes) -> bytes:
        self.buffer += data
        out = bytearray()
        while not self.finished:
            if self.in_data:
                take = min(self.remaining, len(self.buffer))
                out += self.buffer[:take]
                del self.buffer[:take]
                self.remaining -= take
                if self.remaining:
                    break
                if len(self.buffer) < 2:
                    break
                assert self.buffer[:2] == b"\r\n", bytes(self.buffer[:10])
                del self.buffer[:2]
                self.in_data = False
            else:
                end = self.buffer.find(b"\r\n")
                if end < 0:
                    break
                size = int(self.buffer[:end], 16)
                del self.buffer[:end + 2]
                if size == 0:
                    self.finished = True  # the empty trailer's CRLF is not needed
                    break
                self.remaining = size
                self.in_data = True
        return bytes(out)


@pytest.fixture
def streaming_server(request):
    """streaming_server(mode) -> (pid, port) of a tests.support.streaming_server process."""
    processes: list[subprocess.Popen] = []

    def start(mode: str) -> tuple[int, int]:
        env = dict(os.environ)
        import uws_py

        package_root = str(Path(uws_py.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join([package_root, str(REPO), env.get("PYTHONPATH", "")])
        if "libasan" in env.get("LD_PRELOAD", ""):
            # Under scripts/sanitize.sh: ASan's quarantine keeps every freed chunk for a while
            # (256 MiB by default), which is ASan's memory, not buffering of ours.
            env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=0:thread_local_quarantine_size_kb=0"
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.streaming_server", mode, str(TOTAL)],
            cwd=REPO, env=env, stdout=subprocess.PIPE, text=True,
        )
        processes.append(process)
        line = process.stdout.readline()
        assert line.strip().isdigit(), f"the server printed {line!r} instead of its port"
        return process.pid, int(line)

    yield start
    for process in processes:
        process.kill()
        process.wait(timeout=10)


@pytest.mark.parametrize("mode", ["try_end", "write"])
def test_large_response_to_a_slow_reader_streams_with_bounded_memory(streaming_server, mode):
    pid, port = streaming_server(mode)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # A small receive window, so that the kernel does not absorb the slow phase for us.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")

    head = bytearray()
    while b"\r\n\r\n" not in head:
        data = sock.recv(4096)
        assert data, f"closed before the head: {bytes(head)!r}"
        head += data
    head_bytes, _, first = bytes(head).partition(b"\r\n\r\n")
    head_text = head_bytes.decode("latin-1").lower()
    assert head_text.startswith("http/1.1 200")
    if mode == "try_end":
        assert f"content-length: {TOTAL}" in head_text
        decode = lambda data: data  # noqa: E731
    else:
        assert "transfer-encoding: chunked" in head_text
        decode = ChunkedDecoder().feed
    digest = hashlib.sha256()
    received = 0

    def take(data: bytes) -> None:
        nonlocal received
        body = decode(data)
        digest.update(body)
        received += len(body)

    take(first)
    start_rss = rss_of(pid)
    samples = [start_rss]
    # Slow phase: about SLOW_RATE, in 16 KiB reads.
    started = time.monotonic()
    next_sample = started
    while time.monotonic() - started < SLOW_SECONDS:
        want = int((time.monotonic() - started) * SLOW_RATE) + 16 * 1024
        if received < want:
            data = sock.recv(16 * 1024)
            assert data, "the server closed during the slow phase"
            take(data)
        else:
            time.sleep(0.005)
        if time.monotonic() >= next_sample:
            samples.append(rss_of(pid))
            next_sample += 0.25
    slow_received = received
    assert slow_received < (SLOW_SECONDS + 2) * SLOW_RATE, "the client was not slow: the test measured nothing"
    growth = max(samples) - start_rss
    assert growth <= RSS_BOUND, (
        f"server RSS grew by {growth / MIB:.1f} MiB (bound {RSS_BOUND / MIB:.0f} MiB) while a client read "
        f"{slow_received / MIB:.1f} MiB of {TOTAL / MIB:.0f} MiB slowly; samples (MiB): "
        f"{[round(s / MIB, 1) for s in samples]}"
    )
    # Fast phase: the rest, as fast as we read.
    sock.settimeout(20)
    while received < TOTAL:
        data = sock.recv(1024 * 1024)
        assert data, f"closed after {received} of {TOTAL} bytes"
        take(data)
    assert received == TOTAL
    assert digest.hexdigest() == expected_digest(TOTAL)
    assert rss_of(pid) - start_rss <= RSS_BOUND
    sock.close()


@pytest.fixture
def serve(make_server):
    def factory(setup) -> Server:
        return make_server(None, "/*", setup)

    return factory


def test_write_returns_true_when_nothing_waits(serve, recorder):
    results: queue.Queue = queue.Queue()

    def handler(res, req):
        first = res.write("hello ")
        offset = res.get_write_offset()
        res.end("world")
        results.put((first, offset))

    server = serve(lambda app: app.get("/", recorder.guard(handler)))
    response = raw_http(*server.address, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert response.body == b"hello world"
    assert wait_for(results, "the handler") == (True, 6)


def test_try_end_sends_a_sized_body_in_parts(serve, recorder):
    results: queue.Queue = queue.Queue()

    def handler(res, req):
        steps = [res.try_end(b"abc", 6), res.get_write_offset(), res.try_end(memoryview(b"def"), 6)]
        results.put(steps)

    server = serve(lambda app: app.get("/", recorder.guard(handler)))
    response = raw_http(*server.address, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert response.status == 200
    assert response.headers["content-length"] == "6"
    assert response.body == b"abcdef"
    assert wait_for(results, "the handler") == [(True, False), 3, (True, True)]


@pytest.mark.parametrize(
    "misuse, message",
    [
        (lambda res: (res.write("x"), res.try_end(b"y", 1)), "try_end\\(\\) after write\\(\\)"),
        (lambda res: (res.try_end(b"x", 2), res.write("y")), "write\\(\\) after try_end\\(\\)"),
        (lambda res: res.try_end(b"toolong", 3), "goes past total_size"),
        (lambda res: (res.try_end(b"x", 3), res.try_end(b"y", 4)), "differs from the 3"),
        (lambda res: (res.try_end(b"x", 3), res.end(b"yyy")), "end\\(\\) body goes past"),
    ],
    ids=["try_end-after-write", "write-after-try_end", "past-total", "other-total", "end-past-total"],
)
def test_try_end_misuse_raises_value_error(serve, recorder, misuse, message):
    results: queue.Queue = queue.Queue()

    def handler(res, req):
        try:
            misuse(res)
            results.put(None)
        except ValueError as exc:
            results.put(exc)
        res.close()

    server = serve(lambda app: app.get("/", handler))
    sock = socket.create_connection(server.address, timeout=5)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    error = wait_for(results, "the handler")
    assert isinstance(error, ValueError), error
    assert __import__("re").search(message, str(error)), str(error)
    sock.close()


def test_close_ends_the_connection_at_once(serve, recorder):
    aborted: queue.Queue = queue.Queue()

    def handler(res, req):
        res.on_aborted(lambda: aborted.put(True))
        res.write("partial")
        res.close()
        aborted.put(res.aborted)

    server = serve(lambda app: app.get("/", recorder.guard(handler)).get("/ok", lambda res, req: res.end("fine")))
    sock = socket.create_connection(server.address, timeout=5)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    sock.close()
    # Cut: what was queued is dropped with the connection, and the chunked body never finished.
    assert not data.endswith(b"0\r\n\r\n"), data
    assert wait_for(aborted, "on_aborted") is True
    assert wait_for(aborted, "the handler") is True
    assert raw_http(*server.address, b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n").body == b"fine"


def test_end_finishes_a_try_end_body(serve, recorder):
    def handler(res, req):
        res.try_end(b"abc", 6)
        res.end(b"def")

    server = serve(lambda app: app.get("/", recorder.guard(handler)))
    sock = socket.create_connection(server.address, timeout=5)
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    sock.sendall(request * 2)  # keep-alive: the framing is right, so the second one is answered too
    data = b""
    while data.count(b"abcdef") < 2:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    sock.close()
    assert data.count(b"Content-Length: 6\r\n") == 2


def test_head_request_with_try_end_sends_only_the_head(serve, recorder):
    server = serve(lambda app: app.head("/", recorder.guard(lambda res, req: res.try_end(b"12345", 5))))
    sock = socket.create_connection(server.address, timeout=5)
    sock.sendall(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nHEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    sock.close()
    assert data.count(b"HTTP/1.1 200") == 2 and data.count(b"Content-Length: 5") == 2
    assert b"12345" not in data
