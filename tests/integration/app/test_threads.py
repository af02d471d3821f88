"""The cross-thread entry points: publish_threadsafe and defer called from many threads at once,
and close() from a thread that is not the loop's; under run() and under serve()."""

from __future__ import annotations

import struct
import threading
import time

import pytest

from tests.support.harness import RUNNERS, ServerPool
from tests.support.wsclient import Op, connect

TOPIC = "fan-out"
PUBLISHERS = 4
MESSAGES_PER_PUBLISHER = 2000
SUBSCRIBERS = 20
DEFERRING_THREADS = 8
DEFERS_PER_THREAD = 1000
GOING_AWAY = 1001
RECORD = struct.Struct("!HI")  # publishing thread, sequence number


@pytest.fixture(params=["run", "asyncio"])
def loop_kind(request) -> str:
    return request.param


@pytest.fixture
def start_server(recorder, loop_kind):
    pool = ServerPool()
    yield lambda behavior=None, setup=None: pool.start(
        behavior, setup=setup, runner=RUNNERS[loop_kind]
    )
    pool.stop_all()


def subscribing_behavior(recorder) -> dict:
    """Echoing handlers whose open subscribes the socket to TOPIC before recording it."""

    def on_open(ws):
        ws.subscribe(TOPIC)
        recorder.opens.put(ws)

    return recorder.behavior(open=recorder.guard(on_open))


def start_together(count: int, work) -> list:
    """Runs work(index) on count threads released at once; returns the threads, started."""
    gate = threading.Barrier(count, timeout=10)

    def run(index: int) -> None:
        gate.wait()
        work(index)

    threads = [threading.Thread(target=run, args=(index,), daemon=True) for index in range(count)]
    for thread in threads:
        thread.start()
    return threads


def join_all(threads: list, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0.01))
    alive = [thread.name for thread in threads if thread.is_alive()]
    assert not alive, f"threads still running after {timeout} s: {alive}"


def test_publish_threadsafe_from_many_threads_reaches_every_subscriber_once_in_order(
    start_server, recorder
):
    server = start_server(subscribing_behavior(recorder))
    clients = [connect(*server.address) for _ in range(SUBSCRIBERS)]
    try:
        for _ in clients:
            recorder.next_open()
        assert server.call(lambda: server.app.num_subscribers(TOPIC)) == SUBSCRIBERS

        errors = []

        def publish(thread_index: int) -> None:
            try:
                for seq in range(MESSAGES_PER_PUBLISHER):
                    server.app.publish_threadsafe(TOPIC, RECORD.pack(thread_index, seq))
            except BaseException as error:
                errors.append(error)

        join_all(start_together(PUBLISHERS, publish), timeout=20)
        assert not errors, f"publish_threadsafe raised: {errors!r}"

        total = PUBLISHERS * MESSAGES_PER_PUBLISHER
        for index, client in enumerate(clients):
            next_seq = [0] * PUBLISHERS
            for count in range(total):
                message = client.recv_message(timeout=10)
                assert message.opcode == Op.BINARY, (
                    f"subscriber {index}: message {count} has opcode {message.opcode}"
                )
                thread_index, seq = RECORD.unpack(message.payload)
                assert seq == next_seq[thread_index], (
                    f"subscriber {index}: from thread {thread_index} got {seq}, "
                    f"expected {next_seq[thread_index]} (lost, duplicated or reordered)"
                )
                next_seq[thread_index] += 1
            assert next_seq == [MESSAGES_PER_PUBLISHER] * PUBLISHERS
        # All were published; nothing may follow.
        for index, client in enumerate(clients):
            try:
                extra = client.recv_message(timeout=0.05 if index else 0.3)
            except TimeoutError:
                continue
            raise AssertionError(f"subscriber {index} got a message past {total}: {extra!r}")
    finally:
        for client in clients:
            client.disconnect()


def test_publish_threadsafe_keeps_text_and_binary(start_server, recorder):
    server = start_server(subscribing_behavior(recorder))
    with connect(*server.address) as client:
        recorder.next_open()
        sender = threading.Thread(
            target=lambda: [
                server.app.publish_threadsafe(TOPIC, "text é"),
                server.app.publish_threadsafe(TOPIC, b"\x00binary"),
                server.app.publish_threadsafe(TOPIC, b"as text", opcode=Op.TEXT),
            ]
        )
        sender.start()
        sender.join(5)
        assert client.recv_message() == (Op.TEXT, "text é".encode())
        assert client.recv_message() == (Op.BINARY, b"\x00binary")
        assert client.recv_message() == (Op.TEXT, b"as text")


def test_publish_threadsafe_copies_the_message(start_server, recorder):
    server = start_server(subscribing_behavior(recorder))
    with connect(*server.address) as client:
        recorder.next_open()
        # Holding the loop busy, so the publish runs after the buffer has been overwritten.
        release = threading.Event()
        server.app.defer(lambda: release.wait(5))
        buffer = bytearray(b"original")
        server.app.publish_threadsafe(TOPIC, buffer)
        buffer[:] = b"changed!"
        release.set()
        assert client.recv_message() == (Op.BINARY, b"original")


def test_defer_from_many_threads_runs_every_call_once_on_the_loop_thread(start_server):
    server = start_server(setup=lambda app: app.get("/*", lambda res, req: res.end("up")))
    ran: list = []

    def defer_many(thread_index: int) -> None:
        for seq in range(DEFERS_PER_THREAD):
            server.app.defer(lambda seq=seq: ran.append((threading.get_ident(), thread_index, seq)))

    join_all(start_together(DEFERRING_THREADS, defer_many), timeout=20)
    # Deferred after every other call returned, so it runs after all of them.
    count = server.call(lambda: len(ran), timeout=10)
    assert count == DEFERRING_THREADS * DEFERS_PER_THREAD
    assert {ident for ident, _, _ in ran} == {server.thread.ident}
    calls = sorted((thread_index, seq) for _, thread_index, seq in ran)
    expected = [(t, s) for t in range(DEFERRING_THREADS) for s in range(DEFERS_PER_THREAD)]
    assert calls == expected, "a deferred call ran twice or never"


def test_close_from_another_thread(start_server, recorder):
    server = start_server(recorder.behavior())
    clients = [connect(*server.address) for _ in range(3)]
    try:
        for _ in clients:
            recorder.next_open()
        closer = threading.Thread(target=server.app.close, name="closer")
        closer.start()
        closer.join(5)
        assert not closer.is_alive(), "app.close() blocked its calling thread"
        for client in clients:
            assert client.expect_close() == (GOING_AWAY, b"server shutting down")
            client.send_close(GOING_AWAY)
            assert client.wait_for_eof(5.0), "TCP still open after the close handshake"
        server.thread.join(5.0)
        assert not server.thread.is_alive(), "the loop did not return after close() from a thread"
        assert server.runner_error is None, f"the loop raised {server.runner_error!r}"
    finally:
        for client in clients:
            client.disconnect()
    for _ in clients:
        recorder.next_close(timeout=0.5)
