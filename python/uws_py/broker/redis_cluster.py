"""Redis Cluster as the broker: sharded pub/sub (``SSUBSCRIBE``/``SPUBLISH``), so each
topic's messages go only to the shard that owns its slot instead of being copied to every
node as a plain ``PUBLISH`` is.

``RedisClusterBroker("redis+cluster://host:port,host:port")`` (``rediss+cluster://`` for TLS)
takes one or more startup nodes; redis-py's cluster client (8.0 or later: its asyncio client
gained sharded pub/sub there) finds the others, follows ``MOVED`` and refreshes the slot map
after a failover.

- Slots: a topic's channel ``uws:{<topic>}`` and its history keys ``uws:h:{<topic>}:s``/``:m``
  share the hash tag, so they live in one slot and the history script touches one slot only.
  A topic containing ``{`` or ``}`` would make Redis pick a different tag from each name, so
  its tag is a digest of the topic instead (:func:`hash_tag`), and its channel is
  ``uws:{<digest>}<topic>``.
- Connections: one publishing cluster client (a connection per master it talks to) and one
  receiving connection per master that owns a subscribed topic's slot, never one per topic.
- Failover: when a receiving connection is lost (its master died) or Redis moved a slot away
  (it sends ``sunsubscribe``), that shard's topics are subscribed again at their current owner
  after the slot map is read again, every ``SHARD_REPAIR_INTERVAL`` until the replica has
  taken over;
  the other shards' connections stay. The loss is reported with the shard's topics
  (``on_connection(False, topics)``, ``connected`` 0), so that the server catches up (or tells
  ``insufficient_state`` to) the subscribers of those topics only, and ``on_connection(True)``
  follows once every topic is confirmed again.
- Publishing, at most once: a plain publish is sent again only when it certainly did not reach
  a server (:func:`~uws_py.broker.redis_once.certainly_not_sent`: the connect failed, the slot
  has no master, the reply was ``CLUSTERDOWN``; ``MOVED``, ``ASK`` and ``TRYAGAIN`` are
  followed inside redis-py), after
  short pauses (``PUBLISH_RETRY_PAUSES``) on the same client, which reads the slot map again.
  An idle connection the master has closed (a restart) is replaced before the write.
  A publish that was (or may have been) written and not answered within ``publish_timeout``
  (a frozen or stalled master), or whose connection was lost after the write, is not sent
  again, since the master may still run it: it is reported failed (``done(False)``) and
  counted in ``publish_failures``, redis-py drops that connection (a late reply is never read
  as another command's), and the publisher goes on with the next message. redis-py's own
  cluster retries are off for the publishing client (they would resend after a timeout).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any, Optional
from urllib.parse import unquote

from .redact import redact, redacting_logger
from .redis import BACKOFF_CAP, BACKOFF_START, CHANNEL_PREFIX, RedisBroker
from .redis_once import certainly_not_sent, drop_closed, no_retries
from .redis_pool import without_maintenance_notifications

logger = redacting_logger("uws_py.broker")

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
# redis-py's asyncio RedisCluster has pubsub()/ssubscribe from this version on.
REDIS_PY_MINIMUM = (8, 0)
# Seconds between pings of the cluster while no receiving connection is open.
HEALTH_INTERVAL = 1.0
# A publish whose slot has no reachable master is tried again after these pauses (redis-py's
# client reads the slot map again meanwhile), then dropped and counted. Messages behind it wait
# meanwhile, so one publisher's order is kept.
PUBLISH_RETRY_PAUSES = (0.0, 0.1, 0.3, None)
# The longest pause between repair passes while the cluster answers but a shard's topics have
# no master yet (a failover): what is published to the promoted replica before the next pass is
# missed by this process, unseen by any counter.
SHARD_REPAIR_INTERVAL = 0.25
# Seconds for one connect or one publish before it counts as failed (RedisClusterBroker's
# publish_timeout).
PUBLISH_TIMEOUT = 5.0


def hash_tag(topic: str) -> str:
    """What goes between the braces of topic's keys and channel: the topic itself, or for a
    topic with a brace in it (which would end or open the tag early) a hex digest of it."""
    if "{" in topic or "}" in topic:
        return hashlib.sha1(topic.encode("utf-8", "surrogateescape")).hexdigest()[:20]
    return topic


def cluster_channel(prefix: str, topic: str) -> str:
    """The sharded channel of topic: ``<prefix>{<topic>}``, or ``<prefix>{<digest>}<topic>``."""
    tag = hash_tag(topic)
    return f"{prefix}{{{tag}}}" + ("" if tag == topic else topic)


def parse_cluster_url(url: str) -> dict[str, Any]:
    """``redis+cluster://[user:password@]host:port,host:port`` into startup nodes and options.

    Args:
        url: the broker URL (``rediss+cluster://`` for TLS).

    Returns:
        ``{"nodes": [(host, port), ...], "ssl": bool, "username": str|None, "password": str|None}``.

    Raises:
        ValueError: naming what is wrong.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in CLUSTER_SCHEMES:
        raise ValueError(f"a cluster broker URL starts with redis+cluster:// or rediss+cluster://, not {redact(url)!r}")
    rest = rest.split("/", 1)[0].split("?", 1)[0]
    username = password = None
    if "@" in rest:
        credentials, rest = rest.rsplit("@", 1)
        user, has_password, secret = credentials.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if has_password else None
    nodes = []
    for part in rest.split(","):
        host, colon, port_text = part.strip().rpartition(":")
        if not colon:
            host, port_text = part.strip(), "6379"
        host = host.strip("[]")
        if not host:
            raise ValueError(f"cluster broker URL has a node without a host: {redact(url)!r}")
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"cluster broker URL has an invalid port {port_text!r}: {redact(url)!r}")
        nodes.append((host, int(port_text)))
    return {"nodes": nodes, "ssl": scheme == "rediss+cluster", "username": username, "password": password}


def check_redis_py() -> None:
    """RuntimeError unless redis-py with asyncio sharded pub/sub is installed."""
    try:
        import redis
    except ImportError:
        raise RuntimeError("the Redis Cluster broker needs redis-py: pip install 'uws-py[redis]'") from None
    version = tuple(int(part) for part in redis.__version__.split(".")[:2] if part.isdigit())
    if version < REDIS_PY_MINIMUM:
        raise RuntimeError(f"the Redis Cluster broker needs redis-py >= 8.0 (asyncio sharded pub/sub); "
                           f"{redis.__version__} is installed")


def cluster_client(url: str, timeout: Optional[float] = None, **options: Any) -> Any:
    """A redis-py asyncio RedisCluster for url (not connected yet).

    Args:
        url: ``redis+cluster://...``
        timeout: seconds per reply (None: no limit)
        options: more RedisCluster keyword arguments.
    """
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    parsed = parse_cluster_url(url)
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in parsed["nodes"]],
        ssl=parsed["ssl"], username=parsed["username"], password=parsed["password"],
        socket_connect_timeout=2, socket_timeout=timeout, **{**without_maintenance_notifications(), **options},
    )


async def drop_closed_connections(client: Any, key: Optional[str]) -> None:
    """Closes the idle connections to key's master that the master has closed (a restart, a
    crash the kernel reported), so that the next command goes out on a fresh connection
    (:func:`uws_py.broker.redis_once.drop_closed`; redis-py's cluster nodes hand out an idle
    connection unchecked).

    Args:
        client: a redis-py asyncio RedisCluster.
        key: the key (or sharded channel) the next command is for; None: every node's.
    """
    try:
        nodes = client.get_nodes() if key is None else [client.get_node_from_key(key)]
    except Exception:
        return  # the command itself finds out (no master for the slot)
    for node in nodes:
        # redis-py keeps a node's idle connections in ClusterNode._free (it has no public
        # list); if that changes, nothing is checked here and such a command fails (never twice).
        await drop_closed(getattr(node, "_free", ()), node.name)


class _Shard:
    """The receiving connection to one master and the channels subscribed on it."""

    __slots__ = ("name", "client", "pubsub", "channels", "task")

    def __init__(self, name: str, client: Any, pubsub: Any) -> None:
        self.name = name
        self.client = client
        self.pubsub = pubsub
        self.channels: set[bytes] = set()
        self.task: Optional[asyncio.Task[None]] = None


class RedisClusterBroker(RedisBroker):
    """``RedisClusterBroker("redis+cluster://h1:p1,h2:p2")``: :class:`RedisBroker`'s behaviour
    (origin tags, ``ready`` once subscribed, ``on_connection``, ``run`` jobs, counters) on a
    Redis Cluster with sharded pub/sub. See the module docstring for slots and failover."""

    system = "Redis Cluster"
    cluster = True

    def __init__(self, url: str, channel_prefix: str = CHANNEL_PREFIX, *,
                 publish_timeout: float = PUBLISH_TIMEOUT) -> None:
        """
        Args:
            url: ``redis+cluster://host:port,host:port`` (``rediss+cluster://`` for TLS).
            channel_prefix: what precedes a topic's hash tag in its channel's name.
            publish_timeout: seconds for one publish, connect included (a positive number); a
                publish not answered by then is reported failed and not sent again.
        """
        check_redis_py()
        parse_cluster_url(url)
        super().__init__(url, channel_prefix, publish_timeout=publish_timeout)
        self._shards: Optional[dict[str, _Shard]] = None
        self._topology: Any = None
        self._shard_lock: Optional[asyncio.Lock] = None
        # Set when a repair pass is due; the topics whose subscription is to be made (again);
        # the channels subscribed by the running pass whose confirmation has not come yet.
        self._repair = asyncio.Event()
        self._homeless: set[str] = set()
        self._pending_confirmations: set[bytes] = set()
        # What on_connection(False, ...) has told since the last on_connection(True): every
        # topic, or these.
        self._reported_all = False
        self._reported: set[str] = set()

    def channel(self, topic: str) -> str:
        return cluster_channel(self.prefix, topic)

    def topic_of(self, channel: bytes) -> str:
        rest = channel.decode("utf-8", "surrogateescape")[len(self.prefix):]
        tag, _, after = rest[1:].partition("}")
        return after if after else tag

    # -- broker thread ---------------------------------------------------------------------

    async def _connect(self, publishing: bool = False) -> Any:
        """A cluster client with its slot map read: the publisher's (publishing), or the
        subscriber's, which reads the slot map and pings."""
        if publishing:
            # No retry inside redis-py (no_retries): the publisher decides what is sent
            # again. socket_timeout bounds each reply; a timed-out reply's connection is closed
            # by redis-py (Connection.read_response disconnects on a timeout or a cancellation).
            client = cluster_client(self.url, timeout=self.publish_timeout, socket_keepalive=True,
                                    retry=no_retries())
        else:
            client = cluster_client(self.url, timeout=PUBLISH_TIMEOUT, socket_keepalive=True)
        try:
            await asyncio.wait_for(client.initialize(), max(self.publish_timeout, PUBLISH_TIMEOUT))
        except BaseException:
            await client.aclose()
            raise
        return client

    async def _publisher(self) -> None:
        assert self._outbox is not None
        client: Any = None
        while not self._stopping:
            topic, payload, done, trace = await self._outbox.get()
            frame = self.frame_head(trace) + b"|" + payload
            for attempt, pause in enumerate(PUBLISH_RETRY_PAUSES, 1):
                sent = False
                try:
                    if client is None:
                        client = await self._connect(publishing=True)
                    await drop_closed_connections(client, self.channel(topic))
                    sent = True  # from here on it may have been written
                    await asyncio.wait_for(client.spublish(self.channel(topic), frame), self.publish_timeout)
                    self._counters["published"] += 1
                    self._notify(done, True)
                    break
                except Exception as exc:
                    # The client is kept: redis-py reads the slot map again itself, with the
                    # failed node moved last. A fresh client would take the first master of the
                    # slot map as its default node, and while that one is the dead master every
                    # publish, to every shard, would fail until its replica is promoted.
                    if sent and not certainly_not_sent(exc):
                        # Written (or maybe written) and not answered: the master may still
                        # run it, so it is not sent again (at most once).
                        self._failed(1)
                        self._notify(done, False)
                        logger.warning("Redis Cluster did not answer a publish on %r (%r); not sent again, "
                                       "it may still be delivered", topic, exc)
                        break
                    logger.debug("Redis Cluster publish not sent (attempt %d): %r", attempt, exc)
                    if pause is None:
                        # Only this message is lost: the next ones may go to healthy shards.
                        self._failed(1)
                        self._notify(done, False)
                    else:
                        await asyncio.sleep(pause)

    async def _apply_subscription(self, topic: str, subscribe: bool) -> None:
        shards, lock = self._shards, self._shard_lock
        if shards is None or lock is None or self._topology is None or topic in self._homeless:
            if subscribe:
                self._homeless.add(topic)  # made by the next repair pass
            return
        channel = self.channel(topic)
        key = channel.encode("utf-8", "surrogateescape")
        async with lock:
            shard: Optional[_Shard] = None
            try:
                if subscribe and topic in self._topics:
                    shard = await self._shard_for(shards, channel)
                    if key not in shard.channels:
                        shard.channels.add(key)
                        await shard.pubsub.ssubscribe(channel)
                elif not subscribe and topic not in self._topics:
                    for shard in list(shards.values()):
                        if key in shard.channels:
                            shard.channels.discard(key)
                            await shard.pubsub.sunsubscribe(channel)
            except Exception as exc:
                logger.warning("Redis Cluster (un)subscribe of %r failed: %s", topic, exc)
                if shard is not None:
                    await self._shard_failed(shard)
                elif subscribe:
                    self._homeless.add(topic)
                    self._repair.set()

    async def _shard_for(self, shards: dict[str, _Shard], channel: str) -> _Shard:
        """The receiving connection of channel's master, opened on first use."""
        import redis.asyncio as aioredis

        node = self._topology.get_node_from_key(channel)
        shard = shards.get(node.name)
        if shard is None:
            parsed = parse_cluster_url(self.url)
            # No retry inside redis-py: a lost connection must surface here, so that the loss
            # is reported and the shard's topics are subscribed again at their current owner.
            client = aioredis.Redis(host=node.host, port=node.port, ssl=parsed["ssl"], username=parsed["username"],
                                    password=parsed["password"], socket_connect_timeout=2, socket_keepalive=True,
                                    retry=no_retries(), **without_maintenance_notifications())
            pubsub = client.pubsub(ignore_subscribe_messages=False)
            shard = shards[node.name] = _Shard(node.name, client, pubsub)
            shard.task = asyncio.get_running_loop().create_task(self._read_shard(shard))
        return shard

    async def _read_shard(self, shard: _Shard) -> None:
        try:
            while True:
                if not shard.pubsub.subscribed:
                    await asyncio.sleep(0.05)
                    continue
                message = await shard.pubsub.get_message(timeout=1.0)
                if message is None:
                    continue
                kind = message.get("type")
                if kind == "smessage":
                    self._received(message["channel"], message["data"])
                elif kind == "ssubscribe":
                    self._subscription_confirmed(message["channel"])
                elif kind == "sunsubscribe" and message["channel"] in shard.channels:
                    # Not asked for: Redis moved the slot away from this master.
                    logger.warning("%s dropped %r (its slot moved); resubscribing it", shard.name, message["channel"])
                    shard.channels.discard(message["channel"])
                    self._lose({message["channel"]})
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("lost the Redis Cluster connection to %s: %s; resubscribing its %d topic(s)",
                           shard.name, exc, len(shard.channels))
            shard.task = None  # this task ends here; _shard_failed must not wait for it
            await self._shard_failed(shard)

    async def _shard_failed(self, shard: _Shard) -> None:
        """shard's connection is gone: its topics go to the next repair pass; the others stay."""
        if self._shards is not None and self._shards.get(shard.name) is shard:
            del self._shards[shard.name]
        channels, shard.channels = set(shard.channels), set()
        await self._close_shards({shard.name: shard})
        self._lose(channels)

    def _lose(self, channels: set[bytes]) -> None:
        """Publications on channels (none given: on every channel) may be missed from now on:
        reported, and repaired. The server is told which topics were lost
        (``on_connection(False, topics)``), each once until the next ``on_connection(True)``,
        so that only their subscribers have to catch up."""
        topics = {self.topic_of(channel) for channel in channels}
        self._homeless.update(topics)
        with self._subscription_lock:
            self._confirmed -= channels
        self._resubscribing = None
        if self._counters["connected"]:
            self._counters["connected"] = 0
            self._reported_all, self._reported = False, set()
        if self._stopping or self._reported_all:
            pass
        elif not channels:
            self._reported_all = True
            self._notify(self._on_connection, False)
        elif topics - self._reported:
            new = frozenset(topics - self._reported)
            self._reported |= new
            self._notify(self._on_connection, False, new)
        self._repair.set()

    async def _close_shards(self, shards: dict[str, _Shard]) -> None:
        for shard in shards.values():
            if shard.task is not None:
                shard.task.cancel()
                try:
                    await shard.task
                except BaseException:
                    pass
            try:
                await shard.pubsub.aclose()
                await shard.client.aclose()
            except Exception:
                pass
        shards.clear()

    async def _watch(self) -> None:
        """Returns once a repair is due; while no receiving connection is open (no topic
        subscribed) a node is pinged every second, so an unreachable cluster is reported
        all the same."""
        from redis.asyncio.cluster import RedisCluster

        while not self._repair.is_set():
            try:
                await asyncio.wait_for(self._repair.wait(), HEALTH_INTERVAL)
            except asyncio.TimeoutError:
                if self._shards:
                    continue
                try:
                    await asyncio.wait_for(self._topology.ping(target_nodes=RedisCluster.RANDOM), HEALTH_INTERVAL)
                except Exception as exc:
                    logger.warning("the Redis Cluster does not answer: %s; reconnecting", exc)
                    self._lose(set())

    async def _repair_pass(self, shards: dict[str, _Shard], refresh: bool) -> None:
        """Subscribes every homeless topic at its current owner; a master that fails is
        skipped for the rest of the pass (its topics stay homeless). Raises when the cluster
        cannot be reached at all."""
        try:
            if self._topology is None:
                self._topology = await self._connect()
            elif refresh:
                # The slot map as it is now (after a failover the replica owns the slots).
                await self._topology.nodes_manager.initialize()
        except Exception as exc:
            if not shards:
                raise
            # The other shards' connections are up and deliver: keep them, and read the slot
            # map again on the next pass, with a fresh client.
            logger.debug("Redis Cluster slot map not read (%s); %d shard connection(s) kept", exc, len(shards))
            topology, self._topology = self._topology, None
            if topology is not None:
                try:
                    await topology.aclose()
                except Exception:
                    pass
            return
        dead: set[str] = set()
        subscribed: set[bytes] = set()
        async with self._shard_lock:
            for topic in list(self._homeless):
                if topic not in self._topics:
                    self._homeless.discard(topic)
                    continue
                channel = self.channel(topic)
                try:
                    node = self._topology.get_node_from_key(channel)
                except Exception as exc:  # the slot has no master right now
                    logger.debug("Redis Cluster has no owner for %r yet: %s", channel, exc)
                    continue
                if node.name in dead:
                    continue
                shard = await self._shard_for(shards, channel)
                key = channel.encode("utf-8", "surrogateescape")
                try:
                    shard.channels.add(key)
                    await shard.pubsub.ssubscribe(channel)
                except Exception as exc:
                    logger.debug("Redis Cluster subscribe at %s failed: %s", node.name, exc)
                    dead.add(node.name)
                    lost = shard.channels & subscribed
                    # Channels this shard carried before the pass go with its connection too.
                    older = shard.channels - subscribed - {key}
                    shards.pop(node.name, None)
                    shard.channels = set()
                    await self._close_shards({node.name: shard})
                    self._homeless.update(self.topic_of(channel) for channel in lost)
                    subscribed -= lost
                    if older:
                        self._lose(older)
                    continue
                self._homeless.discard(topic)
                subscribed.add(key)
        with self._subscription_lock:
            self._pending_confirmations |= subscribed - self._confirmed

    async def _subscriber(self) -> None:
        backoff = BACKOFF_START
        first = True
        self._shard_lock = asyncio.Lock()
        self._repair = asyncio.Event()
        self._homeless = set(self._topics)
        self._shards = shards = {}
        while not self._stopping:
            self._repair.clear()
            self._pending_confirmations = set()
            try:
                await self._repair_pass(shards, refresh=not first)
            except Exception as exc:
                logger.log(logging.WARNING if shards else logging.DEBUG, "Redis Cluster unreachable: %s", exc)
                await self._close_shards(shards)
                self._homeless.update(self._topics)
                if self._topology is not None:
                    try:
                        await self._topology.aclose()
                    except Exception:
                        pass
                    self._topology = None
                self._lose(set())
                self._repair.clear()
                await asyncio.sleep(backoff)
                backoff = min(BACKOFF_CAP, backoff * 2)
                continue
            if self._homeless & self._topics:
                # A master is unreachable: wait for its replica, reading the slot map again
                # often (the cluster answers), since its topics' publications are missed
                # until they are subscribed at the promoted replica.
                await asyncio.sleep(min(backoff, SHARD_REPAIR_INTERVAL))
                backoff = min(BACKOFF_CAP, backoff * 2)
                continue
            if not first and not self._counters["connected"]:
                self._counters["reconnects"] += 1
                logger.info("Redis Cluster subscriptions repaired: %d topic(s) on %d shard(s)",
                            len(self._topics), len(shards))
            first = False
            backoff = BACKOFF_START
            if not self._counters["connected"]:
                self._counters["connected"] = 1
                if self._pending_confirmations:
                    self._resubscribing = self._pending_confirmations
                else:
                    self._notify(self._on_connection, True)
            self.ready.set()
            await self._watch()
