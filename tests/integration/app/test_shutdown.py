"""Graceful shutdown with app.close(code, reason, timeout): what was queued before the close reaches
clients that keep reading, then the close frame; clients that never answer are dropped after the
timeout; the code and reason reach the clients; nothing new is accepted."""

from __future__ import annotations

import struct
import threading
import time

import pytest

from tests.support.harness import ServerPool, payload_of_size
from tests.support.wsclient import ConnectionClosed, HandshakeRefused, Op, connect, parse_close_payload

TOPIC = "feed"
CLIENTS = 50
GOING_AWAY = 1001
DEFAULT_REASON = b"server shutting down"
SEQUENCE = struct.Struct("!Q")
PUBLISH_BATCH = 2
PUBLISH_INTERVAL = 0.002
LOAD_SECONDS = 1.0
BULK_MESSAGE = 64 * 1024
BULK_COUNT = 128  # 8 MiB queued for a client that reads slowly
SMALL_RECEIVE_BUFFER = 4096
SLACK = 2.5


@pytest.fixture
def start_server(recorder):
    pool = ServerPool()
    yield pool.start
    pool.stop_all()


def subscribing_behavior(recorder, **options) -> dict:
    def on_open(ws):
        ws.subscribe(TOPIC)
        recorder.opens.put(ws)

    return recorder.behavior(open=recorder.guard(on_open), **options)


def assert_run_returns(server, within: float) -> float:
    """Waits for run() to return; returns how long that took."""
    start = time.monotonic()
    server.thread.join(within)
    assert not server.thread.is_alive(), f"run() did not return within {within} s of close()"
    assert server.runner_error is None, f"run() raised {server.runner_error!r}"
    return time.monotonic() - start


def frames_until_eof(client, timeout: float) -> list:
    """Opcodes of every frame the server sends until it closes TCP."""
    deadline = time.monotonic() + timeout
    opcodes = []
    while True:
        try:
            opcodes.append(client.recv_frame(max(deadline - time.monotonic(), 0.001)).opcode)
        except ConnectionClosed:
            return opcodes
        except TimeoutError:
            raise AssertionError(f"TCP still open {timeout} s after the close handshake") from None


class Subscriber:
    """A client that reads on its own thread until the close frame, answers it, and records what
    arrived: sequence numbers, the close code and reason, frames after the close."""

    def __init__(self, client) -> None:
        self.client = client
        self.sequence: list = []
        self.close: tuple = ()
        self.after_close: list = []
        self.error: BaseException = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            while True:
                message = self.client.recv_message(timeout=15)
                if message.opcode == Op.CLOSE:
                    self.close = parse_close_payload(message.payload)
                    break
                self.sequence.append(SEQUENCE.unpack(message.payload)[0])
            self.client.send_close(GOING_AWAY)
            self.after_close = frames_until_eof(self.client, 5.0)
        except BaseException as error:
            self.error = error
        finally:
            self.client.disconnect()


class Publisher:
    """A timer thread publishing numbered messages with publish_threadsafe until stopped.
    `published` is the last number handed to publish_threadsafe; the lock lets the test call
    close() between two publishes and know which was the last before it."""

    def __init__(self, app) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.published = -1
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.wait(PUBLISH_INTERVAL):
            for _ in range(PUBLISH_BATCH):
                with self.lock:
                    self.app.publish_threadsafe(TOPIC, SEQUENCE.pack(self.published + 1))
                    self.published += 1

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(5)


def test_graceful_close_under_load_delivers_everything_then_1001(start_server, recorder):
    server = start_server(subscribing_behavior(recorder, max_backpressure=64 * 1024 * 1024))
    clients = [connect(*server.address) for _ in range(CLIENTS)]
    for _ in clients:
        recorder.next_open()
    assert server.call(lambda: server.app.num_subscribers(TOPIC)) == CLIENTS
    subscribers = [Subscriber(client) for client in clients]
    publisher = Publisher(server.app)
    try:
        time.sleep(LOAD_SECONDS)
        with publisher.lock:
            server.app.close()
            last_before_close = publisher.published
        # Publishing goes on for a while after the close; none of it may follow the close frame.
        time.sleep(0.2)
    finally:
        publisher.stop()
    assert last_before_close > 100, f"only {last_before_close + 1} messages published under load"
    assert_run_returns(server, within=5 + SLACK)

    for index, subscriber in enumerate(subscribers):
        subscriber.thread.join(10)
        assert not subscriber.thread.is_alive(), f"subscriber {index} still reading"
        assert subscriber.error is None, f"subscriber {index}: {subscriber.error!r}"
        received = subscriber.sequence
        assert received == list(range(len(received))), (
            f"subscriber {index}: sequence has gaps or repeats (first break near "
            f"{next(i for i, seq in enumerate(received) if seq != i)})"
        )
        assert len(received) - 1 >= last_before_close, (
            f"subscriber {index} got up to {len(received) - 1}, but {last_before_close} was "
            "published before close()"
        )
        assert subscriber.close == (GOING_AWAY, DEFAULT_REASON), f"subscriber {index}"
        data_after_close = [op for op in subscriber.after_close if op in (Op.TEXT, Op.BINARY)]
        assert not data_after_close, f"subscriber {index}: data frames after the close frame"
    for _ in clients:
        recorder.next_close(timeout=1.0)


def bulk(seq: int) -> bytes:
    return struct.pack("!I", seq) + payload_of_size(BULK_MESSAGE - 4, seed=seq % 251)


@pytest.mark.parametrize("closing_thread", ["loop", "other"])
def test_data_queued_before_close_reaches_a_slow_reader_first(
    start_server, recorder, closing_thread
):
    server = start_server(recorder.behavior(max_backpressure=64 * 1024 * 1024))
    with connect(*server.address, recv_buffer_size=SMALL_RECEIVE_BUFFER) as client:
        ws = recorder.next_open()

        def queue_all() -> int:
            for seq in range(BULK_COUNT):
                ws.send(bulk(seq))
            buffered = ws.get_buffered_amount()
            if closing_thread == "loop":
                server.app.close()
            return buffered

        buffered = server.call(queue_all)
        if closing_thread == "other":
            server.app.close()
        assert buffered > 0, "the test did not queue anything in the server"
        for seq in range(BULK_COUNT):
            message = client.recv_message(timeout=10)
            assert message.opcode == Op.BINARY, (
                f"got {message.opcode} instead of message {seq} of {BULK_COUNT}"
            )
            assert message.payload == bulk(seq), f"message {seq} lost or corrupted"
        assert client.expect_close() == (GOING_AWAY, DEFAULT_REASON)
        client.send_close(GOING_AWAY)
        assert_run_returns(server, within=5.0)


@pytest.mark.parametrize("backlog", [False, True], ids=["idle", "with-backlog"])
def test_client_that_never_answers_is_dropped_after_timeout(start_server, recorder, backlog):
    server = start_server(recorder.behavior(max_backpressure=64 * 1024 * 1024))
    silent = connect(*server.address, recv_buffer_size=SMALL_RECEIVE_BUFFER)
    ws = recorder.next_open()
    polite = connect(*server.address)
    recorder.next_open()
    try:
        if backlog:
            server.call(lambda: [ws.send(bulk(seq)) for seq in range(BULK_COUNT)])
        start = time.monotonic()
        server.app.close(timeout=1)
        assert polite.expect_close() == (GOING_AWAY, DEFAULT_REASON)
        polite.send_close(GOING_AWAY)
        assert polite.wait_for_eof(1.0), "an answering client was kept until the timeout"
        assert_run_returns(server, within=1 + SLACK)
        elapsed = time.monotonic() - start
        assert elapsed >= 0.5, f"run() returned {elapsed:.2f} s after close(timeout=1)"
        assert silent.wait_for_eof(1.0), "the silent client's TCP connection was left open"
    finally:
        silent.disconnect()
        polite.disconnect()


def test_run_returns_promptly_when_every_client_answers(start_server, recorder):
    server = start_server(recorder.behavior())
    clients = [connect(*server.address) for _ in range(5)]
    try:
        for _ in clients:
            recorder.next_open()
        server.app.close(timeout=5)
        for client in clients:
            assert client.expect_close() == (GOING_AWAY, DEFAULT_REASON)
            client.send_close(GOING_AWAY)
        elapsed = assert_run_returns(server, within=5.0)
        assert elapsed < 1.0, f"run() waited {elapsed:.2f} s though every client answered"
    finally:
        for client in clients:
            client.disconnect()


@pytest.mark.parametrize(
    "code, reason",
    [(4000, "maintenance window"), (1012, "service restart"), (1001, "")],
    ids=["4000", "1012", "empty-reason"],
)
def test_custom_code_and_reason_reach_the_clients(start_server, recorder, code, reason):
    server = start_server(recorder.behavior())
    clients = [connect(*server.address) for _ in range(3)]
    try:
        for _ in clients:
            recorder.next_open()
        server.app.close(code=code, reason=reason)
        for client in clients:
            assert client.expect_close() == (code, reason.encode())
            client.send_close(code)
        assert_run_returns(server, within=5.0)
    finally:
        for client in clients:
            client.disconnect()


REFUSALS = (ConnectionRefusedError, ConnectionResetError)


def assert_connection_refused(address) -> None:
    try:
        client = connect(*address, timeout=2.0)
    except REFUSALS:
        return
    except (ConnectionClosed, HandshakeRefused, TimeoutError) as error:
        raise AssertionError(f"a new connection after close() was accepted, then {error!r}")
    client.disconnect()
    raise AssertionError("a new connection after close() was upgraded")


def test_new_connection_after_run_returned_is_refused(start_server, recorder):
    server = start_server(recorder.behavior())
    server.app.close()
    assert_run_returns(server, within=5.0)
    assert_connection_refused(server.address)


def test_new_connection_while_closing_is_refused(start_server, recorder):
    server = start_server(recorder.behavior())
    silent = connect(*server.address)
    witness = connect(*server.address)
    try:
        recorder.next_open()
        recorder.next_open()
        server.app.close(timeout=2)
        # Once a client has the close frame, close() has run on the loop.
        assert witness.expect_close()[0] == GOING_AWAY
        assert server.thread.is_alive(), "run() returned before the silent client was dropped"
        assert_connection_refused(server.address)
    finally:
        silent.disconnect()
        witness.disconnect()
    assert_run_returns(server, within=2 + SLACK)
