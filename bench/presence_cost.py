"""The cost of presence per connection (issue 15): memory per entry in one process, and Redis
commands per second of the periodic refresh, measured with INFO commandstats on a small run of
real hubs and extrapolated to 10,000 clients.

    PYTHONPATH=python .venv/bin/python bench/presence_cost.py [--clients 400] [--workers 2] [--seconds 12]

Memory: tracemalloc around N PresenceEntry objects kept the way a worker keeps them (one dict
per topic, 16-hex client ids, a user id, ``info`` null or a small dict).

Redis: ``--workers`` hubs (``uws-py serve --broker ... --presence room.*``, presence ttl 3 s, so
a refresh every 1 s), ``--clients`` clients spread over them, all in ``--topics`` topics; after
the joins settled, CONFIG RESETSTAT, ``--seconds`` of idle refreshes, then INFO commandstats.
The refresh of one worker is one EVALSHA per topic and per 500 of its clients in that topic,
each running ZRANGEBYSCORE + HSET + ZADD + EXISTS + 2 PEXPIRE; the script checks that count
against what Redis reports, then scales it to the default ttl (30 s: a refresh every 10 s).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import tracemalloc
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # bench/ is run as a script: tests.support and the package beside it
sys.path.insert(0, str(ROOT / "python"))

from tests.support.procutil import HOST, RealtimeClient, RedisServer, UwsServer, metric_value, wait_until  # noqa: E402
from uws_py.realtime.presence import PresenceEntry  # noqa: E402
from uws_py.realtime.presence_redis import ENTRIES_PER_WRITE  # noqa: E402

REFRESHES_PER_TTL = 3


def memory_per_entry(count: int, info: object) -> float:
    # The client id and user id strings belong to the connection (Client.id, Client.user_id),
    # and info to its claims: made before the measurement, so only what presence adds counts.
    ids = [uuid.uuid4().hex[:16] for _ in range(count)]
    users = [f"user-{n % 1000}" for n in range(count)]
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    topic: dict = {}
    for client_id, user_id in zip(ids, users):
        topic[client_id] = PresenceEntry(client_id, user_id, info)
    after, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    grown = after - before
    assert len(topic) == count
    return grown / count


def users_index_per_connection(count: int) -> float:
    """Bytes the user index (users.py) adds per connection with a user id, 10 per user."""
    from types import SimpleNamespace

    from uws_py.realtime.users import Users

    clients = [SimpleNamespace(id=uuid.uuid4().hex[:16], user_id=f"user-{n // 10}") for n in range(count)]
    users = Users({}, lambda *args: True)
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    for client in clients:
        users.opened(client)  # type: ignore[arg-type]
    after, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return (after - before) / count


def commandstats(redis_port: int) -> dict:
    import redis

    with redis.Redis(host=HOST, port=redis_port) as client:
        return {name: (int(value["calls"]), float(value["usec_per_call"]))
                for name, value in client.info("commandstats").items()}


def redis_rate(clients: int, workers: int, topics: int, seconds: float) -> None:
    import redis

    server = RedisServer().start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("UWS_PY_")}
    env["PYTHONPATH"] = str(ROOT / "python")
    ttl = 3.0
    hubs = [UwsServer("--broker", server.url, "--no-access-log", "--rate-limit", "off", "--presence", "room.*",
                      "--presence-ttl", str(ttl), env=env) for _ in range(workers)]
    connections = []
    try:
        for hub in hubs:
            wait_until(lambda hub=hub: metric_value(hub.port, "uws_broker_connected") == 1, "broker up", timeout=15)
        for n in range(clients):
            client = RealtimeClient(hubs[n % workers].port)
            client.send({"type": "SUBSCRIBE", "topic": f"room.{(n // workers) % topics}"})  # every worker in every topic
            connections.append(client)
        wait_until(lambda: sum(metric_value(h.port, "uws_presence_entries") or 0 for h in hubs) == clients,
                   "every entry tracked", timeout=30)
        time.sleep(ttl)  # the join writes are done
        with redis.Redis(host=HOST, port=server.port) as direct:
            direct.config_resetstat()
        refreshes_before = sum(metric_value(h.port, "uws_presence_refreshes_total") or 0 for h in hubs)
        started = time.monotonic()
        time.sleep(seconds)
        stats = commandstats(server.port)
        elapsed = time.monotonic() - started
        refreshes = sum(metric_value(h.port, "uws_presence_refreshes_total") or 0 for h in hubs) - refreshes_before
    finally:
        for client in connections:
            client.close()
        for hub in hubs:
            hub.stop()
        server.cleanup()
    usec = {k: v[1] for k, v in stats.items()}
    stats = {k: v[0] for k, v in stats.items()}
    presence_commands = {k: v for k, v in stats.items() if k.split("_", 1)[1] in (
        "evalsha", "zrangebyscore", "hset", "zadd", "exists", "pexpire", "hget", "hdel", "zrem")}
    total = sum(presence_commands.values())
    per_worker_topic = math.ceil(clients / workers / topics / ENTRIES_PER_WRITE)
    predicted_evalsha = refreshes * topics * per_worker_topic
    print(f"measured: {clients} clients, {workers} workers, {topics} topic(s), ttl {ttl} s (refresh every "
          f"{ttl / REFRESHES_PER_TTL:.1f} s), {elapsed:.1f} s idle")
    print(f"  worker refreshes in the window: {refreshes:.0f}; EVALSHA predicted {predicted_evalsha:.0f}")
    for name, calls in sorted(presence_commands.items()):
        print(f"  {name}: {calls} ({calls / elapsed:.1f}/s, {usec[name]:.1f} us per call)")
    print(f"  presence commands in total: {total} ({total / elapsed:.1f}/s)")
    evalsha = presence_commands.get("cmdstat_evalsha", 0)
    inner = (total - evalsha) / evalsha if evalsha else 0.0
    print(f"  commands run inside each EVALSHA: {inner:.2f}")
    default_interval = 30.0 / REFRESHES_PER_TTL
    for label, topic_count, worker_count in (("10,000 clients, 1 topic, 4 workers", 1, 4),
                                              ("10,000 clients, 100 topics, 4 workers", 100, 4),
                                              ("10,000 clients, each in its own topic, 4 workers", 10_000, 4)):
        # Clients spread evenly: each topic has clients on min(workers, its clients) workers.
        per_topic = 10_000 // topic_count
        holders = min(worker_count, per_topic)
        per_refresh = topic_count * holders * math.ceil(per_topic / holders / ENTRIES_PER_WRITE)
        calls = per_refresh / default_interval
        print(f"extrapolated ({label}, ttl 30 s): {calls:.1f} EVALSHA/s = {calls * (1 + inner):.1f} commands/s, "
              f"{10_000 / default_interval:.0f} entries rewritten/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=400)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--topics", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--entries", type=int, default=10_000)
    args = parser.parse_args()
    for info in (None, {"name": "Ada Lovelace", "role": "admin"}):
        print(f"memory per entry ({args.entries} entries, info {info!r}): {memory_per_entry(args.entries, info):.0f} bytes")
    print(f"user index per connection ({args.entries} connections, 10 per user): "
          f"{users_index_per_connection(args.entries):.0f} bytes")
    redis_rate(args.clients, args.workers, args.topics, args.seconds)


if __name__ == "__main__":
    main()
