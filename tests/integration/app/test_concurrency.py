"""Many connections at once, and app.defer from other threads."""

from __future__ import annotations

import asyncio
import queue
import resource
import threading
import time

import pytest

from tests.support.harness import wait_for
from tests.support.wsclient import (
    Op,
    accept_key,
    connect,
    encode_close_payload,
    encode_frame,
    handshake_request,
    new_key,
    parse_frame,
)

CONNECTIONS = 2000
# Each connection costs two descriptors in this process (client and server side).
DESCRIPTORS_NEEDED = 2 * CONNECTIONS + 200
HANDSHAKES_IN_FLIGHT = 100
CONCURRENCY_DEADLINE = 60.0


@pytest.fixture
def descriptor_budget():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < DESCRIPTORS_NEEDED:
        pytest.skip(
            f"hard RLIMIT_NOFILE is {hard}; {CONNECTIONS} connections need {DESCRIPTORS_NEEDED}"
        )
    if soft != resource.RLIM_INFINITY and soft < DESCRIPTORS_NEEDED:
        resource.setrlimit(resource.RLIMIT_NOFILE, (DESCRIPTORS_NEEDED, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def read_frame(reader: asyncio.StreamReader, buffer: bytearray):
    while True:
        parsed = parse_frame(buffer)
        if parsed is not None:
            frame, used = parsed
            del buffer[:used]
            return frame
        chunk = await reader.read(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buffer += chunk


async def one_connection(host, port, index, gate, all_open, opened):
    async with gate:
        reader, writer = await asyncio.open_connection(host, port)
        key = new_key()
        writer.write(handshake_request(host=f"{host}:{port}", key=key))
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), f"connection {index}: {head[:60]!r}"
        assert accept_key(key).encode() in head
    opened.append(index)
    if len(opened) == CONNECTIONS:
        all_open.set()
    # Every connection is open at the same time before any of them sends.
    await all_open.wait()
    buffer = bytearray()
    text = f"hello from {index}".encode()
    writer.write(encode_frame(Op.TEXT, text))
    assert await read_frame(reader, buffer) == (True, Op.TEXT, text)
    writer.write(encode_frame(Op.CLOSE, encode_close_payload(1000)))
    frame = await read_frame(reader, buffer)
    assert frame.opcode == Op.CLOSE and frame.payload[:2] == b"\x03\xe8", (
        f"connection {index}: {frame}"
    )
    writer.close()


async def run_connections(host, port):
    gate = asyncio.Semaphore(HANDSHAKES_IN_FLIGHT)
    all_open = asyncio.Event()
    opened: list = []
    tasks = [one_connection(host, port, i, gate, all_open, opened) for i in range(CONNECTIONS)]
    await asyncio.wait_for(asyncio.gather(*tasks), CONCURRENCY_DEADLINE)


def test_2000_concurrent_connections_echo(descriptor_budget, make_server, recorder):
    server = make_server(recorder.behavior())
    asyncio.run(run_connections(*server.address))
    deadline = time.monotonic() + 10
    while recorder.closes.qsize() < CONNECTIONS and time.monotonic() < deadline:
        time.sleep(0.05)
    assert recorder.opens.qsize() == CONNECTIONS
    assert recorder.messages.qsize() == CONNECTIONS
    assert recorder.closes.qsize() == CONNECTIONS
    codes = {recorder.closes.get()[1] for _ in range(CONNECTIONS)}
    assert codes == {1000}


def test_defer_from_many_threads_runs_everything_on_loop_thread(echo_server):
    threads_count, calls_per_thread = 4, 250
    ran: queue.Queue = queue.Queue()
    start = threading.Barrier(threads_count)

    def submit(worker):
        start.wait(timeout=5)
        for i in range(calls_per_thread):
            echo_server.app.defer(lambda i=i: ran.put((worker, i, threading.get_ident())))

    workers = [threading.Thread(target=submit, args=(w,)) for w in range(threads_count)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(5)
    results = [wait_for(ran, "a deferred call") for _ in range(threads_count * calls_per_thread)]
    assert {ident for _, _, ident in results} == {echo_server.thread.ident}
    assert sorted((w, i) for w, i, _ in results) == [
        (w, i) for w in range(threads_count) for i in range(calls_per_thread)
    ]


def test_defer_wakes_an_idle_loop_promptly(echo_server):
    time.sleep(0.5)  # let the loop go to sleep in its poll
    ran = threading.Event()
    started = time.monotonic()
    echo_server.app.defer(ran.set)
    assert ran.wait(2.0), "deferred call did not run on an idle loop"
    assert time.monotonic() - started < 0.5


def test_send_from_another_thread_through_defer(echo_server, recorder):
    with connect(*echo_server.address) as client:
        ws = recorder.next_open()

        def worker():
            for i in range(10):
                echo_server.app.defer(lambda i=i: ws.send(f"pushed {i}"))

        thread = threading.Thread(target=worker)
        thread.start()
        thread.join(5)
        assert [client.recv_message().text for _ in range(10)] == [f"pushed {i}" for i in range(10)]


def test_exception_in_deferred_call_is_not_fatal(echo_server):
    def explode():
        raise ValueError("raised on purpose inside a deferred call")

    echo_server.app.defer(explode)
    assert echo_server.call(lambda: "still running") == "still running"
