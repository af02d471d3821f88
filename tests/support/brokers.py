"""The broker backends the broker tests run against, behind one small interface: a URL for
`uws-py serve --broker`, how many processes are subscribed to a topic, and an outage (stop,
then start again on the same ports). Each starts its own servers on loopback ports."""

from __future__ import annotations

from .procutil import HOST, NatsServer, RedisCluster, RedisServer, wait_until

BACKENDS = ("redis", "cluster", "nats")


class Backend:
    """One broker deployment started for a test."""

    name = ""
    # What a hub logs while it cannot publish through this broker.
    unreachable = ""
    url = ""

    def subscribers(self, topic: str) -> int:
        """How many broker connections (one per process) receive topic."""
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def cleanup(self) -> None:
        raise NotImplementedError


class RedisBackend(Backend):
    name, unreachable = "redis", "Redis unreachable"

    def __init__(self) -> None:
        self.server = RedisServer().start()
        self.url = self.server.url

    def subscribers(self, topic: str) -> int:
        import redis

        with redis.Redis(host=HOST, port=self.server.port, socket_timeout=2, socket_connect_timeout=2) as client:
            return dict(client.pubsub_numsub(f"uws:{topic}")).get(f"uws:{topic}".encode(), 0)

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        self.server.start()

    def cleanup(self) -> None:
        self.server.cleanup()


class ClusterBackend(Backend):
    """3 masters; an outage stops every node and starts them again (the cluster's layout is
    kept in each node's nodes.conf; the data is not)."""

    name, unreachable = "cluster", "Redis Cluster unreachable"

    def __init__(self) -> None:
        self.cluster = RedisCluster(masters=3).start()
        self.url = self.cluster.url

    def subscribers(self, topic: str) -> int:
        import redis
        from redis.crc import key_slot

        from uws_py.broker.redis_cluster import cluster_channel

        channel = cluster_channel("uws:", topic)
        port = self.cluster.port_of_slot(key_slot(channel.encode()))
        with redis.Redis(host=HOST, port=port, socket_timeout=2, socket_connect_timeout=2) as client:
            reply = client.execute_command("PUBSUB", "SHARDNUMSUB", channel)
        return int(reply[1])

    def stop(self) -> None:
        self.cluster.stop_all()

    def start(self) -> None:
        self.cluster.start_all()

    def cleanup(self) -> None:
        self.cluster.cleanup()


class NatsBackend(Backend):
    name, unreachable = "nats", "NATS unreachable"

    def __init__(self) -> None:
        self.server = NatsServer().start()
        self.url = self.server.url

    def subscribers(self, topic: str) -> int:
        from uws_py.broker.nats import NatsBroker

        return self.server.subscriptions(NatsBroker.channel_of(topic))

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        self.server.start()

    def cleanup(self) -> None:
        self.server.cleanup()


def start_backend(name: str) -> Backend:
    """A running backend by name (one of BACKENDS)."""
    return {"redis": RedisBackend, "cluster": ClusterBackend, "nats": NatsBackend}[name]()


def wait_for_subscribers(backend: Backend, topic: str, count: int, timeout: float = 10.0) -> None:
    wait_until(lambda: backend.subscribers(topic) == count, f"{count} process(es) subscribed to {topic!r} "
               f"on {backend.name}", timeout=timeout)
