"""`uws-py serve --broker ...`: pub/sub across processes through a real broker started on free
loopback ports: each test runs against one redis-server, a 3-master Redis Cluster
(redis+cluster://) and a nats-server (docs/topics/scaling.md)."""

from __future__ import annotations

import os
import time

import pytest

from tests.support.brokers import BACKENDS, Backend, start_backend, wait_for_subscribers
from tests.support.procutil import RealtimeClient, UwsServer, health_pids, metric_value, wait_until


def clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("UWS_PY_")}


@pytest.fixture(params=BACKENDS)
def backend(request):
    started = start_backend(request.param)
    yield started
    started.cleanup()


@pytest.fixture
def start_hub(backend):
    """start_hub(*options) -> a `uws-py serve --broker ...` process, stopped at teardown."""
    started: list = []

    def start(*options: str) -> UwsServer:
        server = UwsServer(
            "--broker", backend.url, "--log-level", "debug", "--no-access-log", *options, env=clean_env()
        )
        started.append(server)
        if "--workers" not in options:
            # A publish made before the broker first connects is lost (and counted): the tests
            # publish from a hub as soon as the other one's subscription reached the broker.
            wait_for_metric(server, "uws_broker_connected", lambda v: v == 1)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def connect(start_hub):
    """connect(hub) -> a RealtimeClient, disconnected before the hubs stop (a client left
    open would make each hub wait out its close timeout)."""
    clients: list = []

    def open_client(hub: UwsServer) -> RealtimeClient:
        client = RealtimeClient(hub.port)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        client.close()


def wait_for_metric(hub: UwsServer, name: str, accept, timeout: float = 15.0) -> float:
    """Polls the hub's /metrics until the sample `name` satisfies accept; on failure the
    message carries the end of the hub's log."""

    seen: list = []

    def value_if_accepted():
        seen.append(metric_value(hub.port, name))
        value = seen[-1]
        return (value,) if value is not None and accept(value) else None  # (0.0,) is truthy

    try:
        return wait_until(value_if_accepted, f"{name} of pid {hub.pid} reaching the expected value",
                          timeout=timeout, interval=0.1)[0]
    except AssertionError:
        raise AssertionError(
            f"{name} of pid {hub.pid} did not reach the expected value within {timeout} s "
            f"(last {seen[-1] if seen else None}); log: {hub.stderr_text()[-3000:]}"
        ) from None


# -- delivery across processes -----------------------------------------------------------------


def test_publish_reaches_a_subscriber_on_another_process(start_hub, connect, backend):
    a, b = start_hub(), start_hub()
    assert wait_for_metric(a, "uws_broker_connected", lambda v: v == 1) == 1
    remote = connect(b)
    remote.subscribe("news")
    wait_for_subscribers(backend, "news", 1)
    publisher = connect(a)
    publisher.publish("news", {"headline": "across processes", "n": 1})
    message = remote.recv()
    assert message == {
        "type": "MESSAGE",
        "topic": "news",
        "data": {"headline": "across processes", "n": 1},
        "from": publisher.connected["clientId"],
    }
    remote.expect_silence(0.3)
    # And back the other way.
    publisher.subscribe("replies")
    wait_for_subscribers(backend, "replies", 1)
    remote.publish("replies", "pong")
    assert publisher.expect_message("replies") == "pong"
    assert metric_value(a.port, "uws_broker_published_total") >= 1
    assert metric_value(b.port, "uws_broker_received_total") >= 1


def test_topics_stay_apart(start_hub, connect, backend):
    a, b = start_hub(), start_hub()
    on_b = connect(b)
    on_b.subscribe("wanted")
    wait_for_subscribers(backend, "wanted", 1)
    publisher = connect(a)
    publisher.publish("unwanted", 1)
    publisher.publish("wanted", 2)
    assert on_b.expect_message("wanted") == 2
    on_b.expect_silence(0.3)


def test_messages_of_one_publisher_arrive_in_order_everywhere(start_hub, connect, backend):
    a, b = start_hub("--rate-limit", "off"), start_hub("--rate-limit", "off")
    local, remote = connect(a), connect(b)
    local.subscribe("ticks")
    remote.subscribe("ticks")
    wait_for_subscribers(backend, "ticks", 2)
    publisher = connect(a)
    count = 200
    for n in range(count):
        publisher.publish("ticks", n)
    assert [remote.expect_message("ticks") for _ in range(count)] == list(range(count))
    assert [local.expect_message("ticks") for _ in range(count)] == list(range(count))
    remote.expect_silence(0.3)
    local.expect_silence(0.1)


def test_publishers_process_delivers_each_message_once(start_hub, connect, backend):
    """The publishing process is subscribed to the channel too; it must drop its own copy."""
    a, b = start_hub(), start_hub()
    local, remote = connect(a), connect(b)
    local.subscribe("once")
    remote.subscribe("once")
    wait_for_subscribers(backend, "once", 2)
    publisher = connect(a)
    publisher.send({"type": "PUBLISH", "topic": "once", "data": "echoed", "echo": True})
    for n in range(5):
        publisher.publish("once", n)
    # Once the remote process has everything, a's own copies have come back from the broker too.
    assert [remote.expect_message("once") for _ in range(6)] == ["echoed", 0, 1, 2, 3, 4]
    assert [local.expect_message("once") for _ in range(6)] == ["echoed", 0, 1, 2, 3, 4]
    assert publisher.expect_message("once") == "echoed"
    for client in (local, remote, publisher):
        client.expect_silence(0.4)
    assert metric_value(a.port, "uws_broker_received_total") == 0


def test_broker_subscription_follows_local_subscribers(start_hub, connect, backend):
    a = start_hub()
    wait_for_metric(a, "uws_broker_connected", lambda v: v == 1)
    assert backend.subscribers("books") == 0
    first, second = connect(a), connect(a)

    first.subscribe("books")
    wait_for_subscribers(backend, "books", 1)

    second.subscribe("books")
    first.unsubscribe("books")
    time.sleep(0.3)
    assert backend.subscribers("books") == 1, "unsubscribed while a local subscriber was left"

    second.unsubscribe("books")
    wait_for_subscribers(backend, "books", 0)

    # A subscriber that just goes away counts as unsubscribing.
    second.subscribe("books")
    wait_for_subscribers(backend, "books", 1)
    second.close()
    wait_for_subscribers(backend, "books", 0)
    # Another topic is independent of this one.
    first.subscribe("films")
    wait_for_subscribers(backend, "films", 1)
    assert backend.subscribers("books") == 0


def test_workers_with_a_broker_deliver_across_workers(start_hub, connect, backend):
    hub = start_hub("--workers", "2")
    seen: set = set()
    deadline = time.monotonic() + 10.0
    while len(seen) < 2 and time.monotonic() < deadline:
        seen |= health_pids(hub.port, 20)
    assert len(seen) == 2, (
        f"--workers 2 --broker: /health answered from pids {seen} only (supervisor pid {hub.pid}); "
        "expected two worker processes"
    )
    assert hub.pid not in seen
    # Connections spread over the workers as the kernel decides; add subscribers until both
    # workers have one (each worker holds one broker subscription for the topic).
    clients = []
    while backend.subscribers("fanout") < 2 and len(clients) < 32:
        for _ in range(4):
            client = connect(hub)
            client.subscribe("fanout")
            clients.append(client)
        time.sleep(0.1)
    wait_for_subscribers(backend, "fanout", 2, timeout=5.0)
    publisher = connect(hub)
    publisher.publish("fanout", "to every worker")
    assert [client.expect_message("fanout") for client in clients] == ["to every worker"] * len(clients)
    for client in clients:
        client.expect_silence(0.05)


def restart_broker(backend: Backend, hubs, outage=None) -> None:
    """Stops the broker's server(s), runs outage() while they are down, starts them again on
    the same ports and waits until every hub's broker is connected again."""
    backend.stop()
    for hub in hubs:
        wait_for_metric(hub, "uws_broker_connected", lambda v: v == 0)
    if outage is not None:
        outage()
    backend.start()
    for hub in hubs:
        wait_for_metric(hub, "uws_broker_connected", lambda v: v == 1)
        assert metric_value(hub.port, "uws_broker_reconnects_total") >= 1


def test_broker_restart_local_delivery_goes_on_and_remote_delivery_resumes(start_hub, connect, backend):
    a, b = start_hub(), start_hub()
    local, remote = connect(a), connect(b)
    local.subscribe("live")
    remote.subscribe("live")
    wait_for_subscribers(backend, "live", 2)
    publisher = connect(a)
    publisher.publish("live", "before")
    assert remote.expect_message("live") == "before"
    assert local.expect_message("live") == "before"

    def outage():
        publisher.publish("live", "during")
        assert local.expect_message("live") == "during"
        wait_for_metric(a, "uws_broker_publish_failures_total", lambda v: v > 0)
        remote.expect_silence(0.3)
        assert backend.unreachable in a.stderr_text()

    restart_broker(backend, (a, b), outage)
    wait_for_subscribers(backend, "live", 2)
    publisher.publish("live", "after")
    # At most once: "during" is gone for the other process, and nothing is replayed.
    assert remote.expect_message("live", timeout=10.0) == "after"
    assert local.expect_message("live") == "after"
    remote.expect_silence(0.3)


def test_first_publish_after_broker_restart_reaches_other_processes(start_hub, connect, backend):
    """A process that did not publish during the outage must not lose its first publish
    once the broker is back and reports itself connected."""
    a, b = start_hub(), start_hub()
    subscriber, publisher = connect(a), connect(b)
    subscriber.subscribe("resumed")
    wait_for_subscribers(backend, "resumed", 1)
    publisher.publish("resumed", "before")
    assert subscriber.expect_message("resumed") == "before"

    restart_broker(backend, (a, b))
    wait_for_subscribers(backend, "resumed", 1)
    publisher.publish("resumed", "first after the restart")
    publisher.publish("resumed", "second after the restart")
    received = []
    try:
        received.append(subscriber.expect_message("resumed", timeout=5.0))
        received.append(subscriber.expect_message("resumed", timeout=5.0))
    except AssertionError:
        pass
    failures = metric_value(b.port, "uws_broker_publish_failures_total")
    assert received == ["first after the restart", "second after the restart"], (
        f"received {received}; the publishing process counted {failures} publish failure(s) "
        "although its broker was connected again"
    )
    assert failures == 0
