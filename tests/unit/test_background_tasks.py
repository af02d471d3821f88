"""Background coroutines that nothing else references must survive a garbage collection and must
not end with an unseen exception: the broker's ``_call`` (subscribe/unsubscribe on the broker's
loop) and an async ``on_state`` of the SDK client.

Each coroutine here awaits a future that only its own frame references (reachable from the test
through a weak reference only), the shape a coroutine waiting on a pool connection has. The loop
holds tasks weakly, so without a strong reference elsewhere ``gc.collect()`` destroys the task and
its await never completes."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
import weakref

from uws_py.broker.threaded import ThreadedBroker
from uws_py.sdk.client import ClientState, RealtimeClient

TOPICS = 50


class ProbeBroker(ThreadedBroker):
    """A ThreadedBroker whose subscription coroutine waits on a weakly held future."""

    system = "probe"

    def __init__(self) -> None:
        super().__init__("probe://")
        self.waiting: list[weakref.ref] = []
        self.applied: list[str] = []

    def channel(self, topic: str) -> str:
        return "p:" + topic

    def topic_of(self, channel: bytes) -> str:
        return channel.decode()[2:]

    def _tasks(self):
        async def mark_ready() -> None:
            self.ready.set()

        return [mark_ready()]

    async def _apply_subscription(self, topic: str, subscribe: bool) -> None:
        if topic == "bad":
            raise RuntimeError("the probe refuses this topic")
        future = asyncio.get_running_loop().create_future()
        self.waiting.append(weakref.ref(future))
        await future
        self.applied.append(topic)


def wait_until(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def started_probe() -> ProbeBroker:
    broker = ProbeBroker()
    broker.start(lambda topic, payload: None, lambda callback: callback())
    assert broker.ready.wait(5)
    return broker


def test_broker_calls_survive_a_collection_while_they_wait():
    broker = started_probe()
    try:
        for n in range(TOPICS):
            broker.subscribe(f"t{n}")
        assert wait_until(lambda: len(broker.waiting) == TOPICS)
        gc.collect()
        loop = broker._loop
        assert loop is not None
        alive = [ref() for ref in broker.waiting]
        for future in alive:
            if future is not None:
                loop.call_soon_threadsafe(future.set_result, None)
        del alive
        wait_until(lambda: len(broker.applied) == TOPICS, timeout=5.0)
    finally:
        broker.stop()
    assert sorted(broker.applied) == sorted(f"t{n}" for n in range(TOPICS))
    assert broker._calls == set()  # every held future was let go once done


def test_broker_call_that_raises_is_logged(caplog):
    broker = started_probe()
    try:
        with caplog.at_level(logging.ERROR, logger="uws_py.broker"):
            broker.subscribe("bad")
            assert wait_until(lambda: any("broker call failed" in r.getMessage() for r in caplog.records))
    finally:
        broker.stop()
    record = next(r for r in caplog.records if "broker call failed" in r.getMessage())
    assert record.exc_info is not None and "refuses this topic" in str(record.exc_info[1])


def test_async_on_state_survives_a_collection_and_its_failure_is_logged(caplog):
    waiting: list[weakref.ref] = []
    finished: list[ClientState] = []

    async def on_state(state: ClientState, error) -> None:
        if state is ClientState.CLOSED:
            raise RuntimeError("on_state failed on purpose")
        future = asyncio.get_running_loop().create_future()
        waiting.append(weakref.ref(future))
        await future
        finished.append(state)

    async def scenario() -> None:
        client = RealtimeClient("ws://127.0.0.1:1/", on_state=on_state)
        client._set_state(ClientState.CONNECTING)
        client._set_state(ClientState.CONNECTED)
        await asyncio.sleep(0)  # the two callbacks start and wait
        assert len(waiting) == 2
        gc.collect()
        for ref in waiting:
            future = ref()
            if future is not None:
                future.set_result(None)
        del future
        for _ in range(10):
            await asyncio.sleep(0)
        client._set_state(ClientState.CLOSED)
        for _ in range(10):
            await asyncio.sleep(0)

    with caplog.at_level(logging.ERROR, logger="uws_py.sdk"):
        asyncio.run(scenario())
    assert finished == [ClientState.CONNECTING, ClientState.CONNECTED]
    failures = [r for r in caplog.records if "realtime client failed" in r.getMessage()]
    assert len(failures) == 1 and "on purpose" in str(failures[0].exc_info[1])


def test_broker_call_after_the_loop_stopped_is_dropped_quietly():
    """A connection closing after the broker stopped unsubscribes: that must not raise
    (it raised "Event loop is closed" on the caller's thread)."""
    broker = started_probe()
    broker.stop()
    errors: list[BaseException] = []

    def late_calls() -> None:
        try:
            broker.subscribe("late")
            broker.unsubscribe("late")
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=late_calls)
    thread.start()
    thread.join(timeout=5)
    assert not thread.is_alive() and errors == []
