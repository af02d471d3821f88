"""Presence across `uws-py serve --broker redis://... --presence ...` processes sharing one real
redis-server (issue 15 tests 1 and 2), and the user operations across workers."""

from __future__ import annotations

import os
import signal
import threading
import time

import jwt
import pytest

from tests.support.hubs import ClientGroup, HubGroup, wait_for_hub_subscriptions
from tests.support.procutil import RealtimeClient, RedisServer, UwsServer, metric_value, wait_until


SECRET = "presence hub tests: an HS256 key of 32+ bytes"
TTL = 2.0
DIFF_INTERVAL = 0.3


def token(user: str) -> str:
    return jwt.encode({"sub": user, "exp": time.time() + 600, "info": {"name": user.upper()}}, SECRET,
                      algorithm="HS256")


@pytest.fixture
def redis_server():
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def hubs(redis_server):
    """hubs(n) -> n hub processes with presence on room.* (join/leave on), a short TTL."""
    group = HubGroup(redis_server.url, "--no-access-log", "--rate-limit", "off", "--jwt-secret", SECRET,
                     "--presence", "room.*:join_leave", "--presence", "quiet.*", "--presence-ttl", str(TTL))
    yield lambda count, diff_interval=DIFF_INTERVAL: group.start(count, "--presence-diff-interval", str(diff_interval))
    group.stop()


@pytest.fixture
def connect():
    clients = ClientGroup()
    yield lambda hub, user: clients.open(hub.port, headers=[("Authorization", f"Bearer {token(user)}")])
    clients.close()


def presence_ids(client: RealtimeClient, topic: str) -> set:
    reply = client.request({"type": "PRESENCE", "topic": topic})
    assert reply["type"] == "PRESENCE_RESULT", reply
    return {entry["clientId"] for entry in reply["clients"]}


class DiffRecorder:
    """Reads one client's messages on a thread, keeping each PRESENCE_DIFF with its arrival time."""

    def __init__(self, client: RealtimeClient) -> None:
        self.client = client
        self.diffs: list = []
        self.others: list = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                message = self.client.recv(0.2)
            except TimeoutError:
                continue
            except Exception as exc:  # the connection ended: recorded, the test looks at it
                self.others.append(exc)
                return
            if message.get("type") == "PRESENCE_DIFF":
                self.diffs.append((time.monotonic(), message))
            else:
                self.others.append(message)

    def present(self) -> set:
        """Who is present according to the diffs received so far."""
        present: set = set()
        for _, diff in list(self.diffs):
            present |= {e["clientId"] for e in diff["joins"]}
            present -= {e["clientId"] for e in diff["leaves"]}
        return present

    def left(self) -> set:
        """Every client id a diff reported as leaving."""
        return {e["clientId"] for _, diff in list(self.diffs) for e in diff["leaves"]}

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def test_three_workers_share_presence_and_lose_a_killed_one_within_the_ttl(hubs, connect):
    workers = hubs(3)
    _, _, killed_hub = workers
    members: dict = {}
    recorders: list = []  # the first client of each worker records the diffs it gets
    for index, hub in enumerate(workers):
        for n in range(10):
            client = connect(hub, f"user{n}")
            client.subscribe("room.1")
            members[client.connected["clientId"]] = (index, client)
            if n == 0:
                recorders.append(DiffRecorder(client))
    survivors = recorders[:2]
    expected = set(members)
    asker = connect(workers[1], "asker")  # not in the topic: allowed to ask, not listed
    wait_until(lambda: presence_ids(asker, "room.1") == expected, "30 entries listed", timeout=5.0)
    entries = asker.request({"type": "PRESENCE", "topic": "room.1"})["clients"]
    assert len(entries) == 30
    assert sorted((e["userId"], e["info"]["name"]) for e in entries) == \
        sorted((f"user{n}", f"USER{n}") for n in range(10) for _ in range(3))
    stats = asker.request({"type": "PRESENCE_STATS", "topic": "room.1"})
    assert (stats["numClients"], stats["numUsers"]) == (30, 10), stats
    # Diffs tell what changed after a subscription (a newcomer starts from PRESENCE): the first
    # client, there before every other, saw every join; the others see the later changes.
    wait_until(lambda: recorders[0].present() == expected, "every join seen by the first client", timeout=10.0)

    # A clean leave (UNSUBSCRIBE) on another worker: gone from PRESENCE at once, and the watcher
    # gets the leave.
    watching = {recorder.client.connected["clientId"] for recorder in recorders}
    leaver_id = next(cid for cid, (index, _) in members.items() if index == 1 and cid not in watching)
    members.pop(leaver_id)[1].unsubscribe("room.1")
    started = time.monotonic()
    wait_until(lambda: leaver_id not in presence_ids(asker, "room.1"), "the clean leave", timeout=2.0)
    assert time.monotonic() - started < 1.0
    for recorder in recorders:
        wait_until(lambda recorder=recorder: leaver_id in recorder.left(), "the leave seen", timeout=5.0)

    # SIGKILL: no leave is sent, the killed worker's entries expire within the TTL.
    killed = {cid for cid, (index, _) in members.items() if index == 2}
    os.kill(killed_hub.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    wait_until(lambda: not (presence_ids(asker, "room.1") & killed), "killed entries expired", timeout=TTL + 2.0)
    assert time.monotonic() - killed_at <= TTL + 0.5, "entries outlived the TTL"
    assert presence_ids(asker, "room.1") == expected - killed - {leaver_id}
    stats = asker.request({"type": "PRESENCE_STATS", "topic": "room.1"})
    assert (stats["numClients"], stats["numUsers"]) == (19, 10), stats
    # A surviving worker's next refresh finds them expired and reports their leave.
    for recorder in survivors:
        wait_until(lambda recorder=recorder: killed <= recorder.left(), "the killed clients' leave seen",
                   timeout=TTL + 5.0)
    for recorder in recorders:
        recorder.stop()
    assert metric_value(workers[0].port, "uws_presence_entries") == 10
    for recorder in survivors:
        assert recorder.others == []


def test_reconnect_storm_gives_each_subscriber_at_most_one_diff_per_interval(hubs, connect):
    interval = 0.5
    first, second = hubs(2, diff_interval=interval)
    watchers = [connect(hub, f"watcher{n}") for n, hub in enumerate((first, second, first, second))]
    for watcher in watchers:
        watcher.subscribe("room.storm")
    recorders = [DiffRecorder(watcher) for watcher in watchers]
    time.sleep(2 * interval)  # each worker's Redis subscription of the topic is confirmed
    storm: list = []
    dropped: set = set()
    for round_ in range(2):  # connect 250 clients per worker, drop them all, connect them again
        for client in storm:
            client.close()
        dropped |= {client.connected["clientId"] for client in storm}
        storm = []
        for n in range(500):
            client = connect(first if n % 2 else second, f"storm{n}")
            client.send({"type": "SUBSCRIBE", "topic": "room.storm"})
            storm.append(client)
    final = {client.connected["clientId"] for client in storm}
    # Every subscriber was there before the storm: it saw every join and every leave of it.
    for recorder in recorders:
        wait_until(lambda recorder=recorder: final <= recorder.present() and not (dropped & recorder.present()),
                   "every join and leave of the storm seen", timeout=20.0)
    time.sleep(2 * interval)
    for recorder in recorders:
        recorder.stop()
    for recorder in recorders:
        diffs = [diff for _, diff in recorder.diffs if diff["topic"] == "room.storm"]
        # At most one per interval per topic, by the server's clock (``timestamp``, ms): arrival
        # times on this busy test process jitter by more than the interval itself.
        sent = [diff["timestamp"] for diff in diffs]
        gaps = [(b - a) / 1000 for a, b in zip(sent, sent[1:])]
        # The loop's timers count whole milliseconds, and so does timestamp: 2 ms of slack.
        assert min(gaps) >= interval - 0.002, (len(sent), gaps)
        times = [when for when, diff in recorder.diffs if diff["topic"] == "room.storm"]
        span = times[-1] - times[0]
        assert len(times) <= (sent[-1] - sent[0]) / 1000 / interval + 1, (len(times), gaps)
        # 1500 joins and 500 leaves reached this subscriber in a few dozen frames, not 2000.
        assert len(times) < 60, len(times)
        print(f"storm: {len(times)} diffs over {span:.2f} s (arrival), smallest gap {min(gaps):.3f} s (server clock)")
    storm_check = connect(first, "checker")
    assert presence_ids(storm_check, "room.storm") == final | {watcher.connected["clientId"] for watcher in watchers}


@pytest.fixture
def app_hubs(redis_server):
    """Two hubs running tests.support.presence_app (the admin.* types call the user operations)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UWS_PY_")}
    env["UWS_TEST_BROKER"] = redis_server.url
    started = [UwsServer("tests.support.presence_app:make", env=env) for _ in range(2)]
    try:
        for hub in started:
            wait_until(lambda hub=hub: metric_value(hub.port, "uws_broker_connected") == 1,
                       f"broker of pid {hub.pid} connected", timeout=15.0)
        yield started
    finally:
        for hub in started:
            hub.stop()


def test_send_to_user_exclude_and_disconnect_user_across_workers(app_hubs, connect, redis_server):
    first, second = app_hubs
    alice_here, alice_there, bob = connect(first, "alice"), connect(second, "alice"), connect(second, "bob")
    carol = connect(second, "carol")
    admin = connect(first, "admin")
    for client in (alice_here, alice_there, bob, carol):
        client.subscribe("news")
    wait_until(lambda: metric_value(second.port, "uws_broker_connected") == 1, "broker up")
    wait_for_hub_subscriptions(redis_server, {"news": 2, "#control": 2})

    done = admin.request({"type": "admin.send", "user": "alice", "data": {"hello": 1}})
    assert done == {"type": "admin.done", "local": 1, "id": done["id"]}
    for client in (alice_here, alice_there):
        assert client.recv() == {"type": "MESSAGE", "topic": "#user:alice", "data": {"hello": 1}, "from": None}
    bob.expect_silence(0.3)

    excluded = [alice_there.connected["clientId"], bob.connected["clientId"]]
    admin.request({"type": "admin.publish", "topic": "news", "data": "x", "exclude": excluded})
    assert alice_here.expect_message("news") == "x"
    assert carol.expect_message("news") == "x"
    alice_there.expect_silence(0.3)
    bob.expect_silence(0.1)

    refused = admin.request({"type": "PUBLISH", "topic": "#user:alice", "data": 1})
    assert (refused["type"], refused["code"]) == ("ERROR", "FORBIDDEN"), refused
    refused = admin.request({"type": "SUBSCRIBE", "topic": "#control"})
    assert (refused["type"], refused["code"]) == ("ERROR", "FORBIDDEN"), refused

    started = time.monotonic()
    admin.send({"type": "admin.kick", "user": "alice"})
    for client in (alice_here, alice_there):
        code, reason = client.ws.expect_close(2.0)
        assert (code, reason) == (4000, b"kicked")
    assert time.monotonic() - started < 1.0
    bob.expect_silence(0.2)


def test_a_worker_stopped_gracefully_leaves_no_entry_behind(redis_server, connect):
    """SIGTERM closes the connections; their entries are deleted at once, not after the ttl."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UWS_PY_")}
    common = ("--broker", redis_server.url, "--no-access-log", "--rate-limit", "off", "--jwt-secret", SECRET,
              "--presence", "room.*", "--presence-ttl", "60")
    staying, leaving = UwsServer(*common, env=env), UwsServer(*common, env=env)
    try:
        for hub in (staying, leaving):
            wait_until(lambda hub=hub: metric_value(hub.port, "uws_broker_connected") == 1, "broker up", timeout=15.0)
        clients = [connect(leaving, f"user{n}") for n in range(5)]
        for client in clients:
            client.subscribe("room.g")
        asker = connect(staying, "asker")
        wait_until(lambda: len(presence_ids(asker, "room.g")) == 5, "5 entries", timeout=5.0)
        leaving.signal(signal.SIGTERM)
        # The clients answer the server's close, as browsers do: else the worker waits out its
        # close timeout on each of them before it exits.
        assert [client.expect_close() for client in clients] == [1001] * len(clients)
        assert leaving.wait(15.0) == 0
        assert presence_ids(asker, "room.g") == set()  # the ttl is 60 s: only a deletion explains this
    finally:
        staying.stop()
        leaving.stop()
