"""Presence kept in Redis, so that every worker and machine sees one presence per topic.

Per topic two keys share the hash tag ``{topic}`` (one Redis Cluster slot): a hash
``uws:p:{topic}:e`` (client id -> the entry as JSON) and a sorted set ``uws:p:{topic}:x``
(client id -> the time in ms its entry expires). Each worker writes its own clients: a join
or a refresh sets the entry and pushes its expiry ``ttl`` ahead, a clean leave deletes both at
once. A worker that dies stops refreshing; its entries are no longer listed once their expiry
passed, and the next write to the topic (any worker's join, leave or refresh) deletes them and
returns them, so that worker reports their leave. Both keys expire ``ttl`` after the last write,
so a topic nobody refreshes leaves nothing behind.

Redis Cluster (``cluster=True``, a ``redis+cluster://`` URL, as :meth:`RedisPresence.for_broker`
makes it beside a ``RedisClusterBroker``): the tag is ``uws_py.broker.redis_cluster.hash_tag``
of the topic (a digest for a topic with a brace in it, as the history keys), so both keys of a
topic are in one slot and each script touches that slot only. A refresh of many topics is one
script call per topic, sent concurrently (at most CLUSTER_CONCURRENCY at once): redis-py's
cluster pipeline does not carry ``EVALSHA``, and the topics live on different shards anyway.

Every method is a coroutine for the broker's loop (``RedisBroker.run``); the client is created
on first use, on that loop.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Callable, Sequence

import orjson

from ..broker.redact import redact
from ..broker.redis_pool import without_maintenance_notifications
from ..broker.redis_cluster import cluster_client, hash_tag, parse_cluster_url
from .history_redis import MAX_CONNECTIONS, TIMEOUT, UNAVAILABLE_REPLIES, _Script, bounded_client, check_max_connections
from .presence import PresenceUnavailable, stats_of

if TYPE_CHECKING:
    from ..broker.redis import RedisBroker

KEY_PREFIX = "uws:p:"
# Expired entries one write deletes (and reports) at most; the rest go with the next writes,
# so one call's work stays bounded when a large worker died.
EXPIRED_PER_WRITE = 1000

# KEYS: entries hash, expiry zset. ARGV: now ms, expire-at ms, key ttl ms, number of entries to
# set n, then n (client id, entry) pairs, then the client ids to delete. Returns the entries of
# expired clients it deleted (at most EXPIRED_PER_WRITE).
WRITE_LUA = """
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, %d)
local expired = {}
for i = 1, #gone do
  expired[i] = redis.call('HGET', KEYS[1], gone[i]) or ''
  redis.call('HDEL', KEYS[1], gone[i])
  redis.call('ZREM', KEYS[2], gone[i])
end
local n = tonumber(ARGV[4])
if n > 0 then
  local fields, scores = {}, {}
  for i = 0, n - 1 do
    local id = ARGV[5 + 2 * i]
    fields[#fields + 1] = id
    fields[#fields + 1] = ARGV[6 + 2 * i]
    scores[#scores + 1] = ARGV[2]
    scores[#scores + 1] = id
  end
  redis.call('HSET', KEYS[1], unpack(fields))
  redis.call('ZADD', KEYS[2], unpack(scores))
end
local first = 5 + 2 * n
if first <= #ARGV then
  local ids = {}
  for i = first, #ARGV do ids[#ids + 1] = ARGV[i] end
  redis.call('HDEL', KEYS[1], unpack(ids))
  redis.call('ZREM', KEYS[2], unpack(ids))
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
return expired
""" % EXPIRED_PER_WRITE

# KEYS: entries hash, expiry zset. ARGV: now ms. Returns {live client ids, hash as flat pairs}:
# the entries of clients whose expiry has not passed are listed; nothing is written.
READ_LUA = """
local live = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf')
if #live == 0 then return {{}, {}} end
return {live, redis.call('HGETALL', KEYS[1])}
"""

# Entries one write carries at most: Lua's unpack has a stack limit, and one huge call would
# hold Redis for long. A refresh of more clients is split over several calls.
ENTRIES_PER_WRITE = 500
# Scripts sent in one pipeline (one round trip) at most, when many topics are written at once.
SCRIPTS_PER_PIPELINE = 200
# Script calls in flight at once on a Redis Cluster (each takes a connection of its shard's pool).
CLUSTER_CONCURRENCY = 32

# (topic, (client id, encoded entry) to set, client ids to delete)
Write = tuple[str, Sequence[tuple[str, bytes]], Sequence[str]]


class RedisPresence:
    """The Redis store; the same answers as :class:`uws_py.realtime.presence.MemoryPresence`.

    Args:
        url: ``redis://host:port/db``.
        ttl: seconds an entry lives without a refresh.
        key_prefix: of the two keys per topic.
        timeout: seconds per connect and per reply.
        clock: wall-clock seconds (every worker's clock must agree within a fraction of ttl).
        cluster: the url is ``redis+cluster://...``: redis-py's cluster client, keys tagged by
            ``hash_tag``, one script call per topic.
        max_connections: connections to Redis at most (not with ``cluster``); more concurrent
            writes and reads wait for one (up to ``timeout``, then PresenceUnavailable).
    """

    def __init__(self, url: str, ttl: float, *, key_prefix: str = KEY_PREFIX, timeout: float = TIMEOUT,
                 clock: Callable[[], float] = time.time, cluster: bool = False,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        check_max_connections(max_connections)
        if cluster:
            parse_cluster_url(url)
        self.url = url
        self.max_connections = max_connections
        self.cluster = cluster
        self.ttl = ttl
        self.key_prefix = key_prefix
        self.timeout = timeout
        self.clock = clock
        self._client: Any = None
        self._write = _Script(WRITE_LUA)
        self._read = _Script(READ_LUA)

    @classmethod
    def for_broker(cls, broker: "RedisBroker", ttl: float) -> "RedisPresence":
        """The store on the Redis (or Redis Cluster) of a Redis broker.

        Args:
            broker: a RedisBroker or RedisClusterBroker
            ttl: as for the constructor.
        """
        return cls(broker.url, ttl, cluster=bool(getattr(broker, "cluster", False)))

    def keys(self, topic: str) -> tuple[str, str]:
        """The entries and expiry keys of topic (hash-tagged on the topic; in a cluster on
        ``hash_tag(topic)``, so that both are in one slot whatever braces the topic has)."""
        if self.cluster:
            tag = hash_tag(topic)
            base = f"{self.key_prefix}{{{tag}}}" + ("" if tag == topic else topic)
        else:
            base = f"{self.key_prefix}{{{topic}}}"
        return base + ":e", base + ":x"

    async def write(self, topic: str, entries: Sequence[tuple[str, bytes]] = (),
                    removed: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Sets (joins, refreshes) and deletes (clean leaves) entries of topic in one step.

        Args:
            topic: a presence topic
            entries: (client id, encoded entry) to set, their expiry ``ttl`` from now
            removed: client ids to delete.

        Returns:
            the entries of other clients that had expired and were deleted now.

        Raises:
            PresenceUnavailable: when Redis cannot be used.
        """
        return (await self.write_many([(topic, entries, removed)]))[topic]

    async def write_many(self, writes: Sequence[Write]) -> dict[str, list[dict[str, Any]]]:
        """:meth:`write` for many topics, in pipelines of at most SCRIPTS_PER_PIPELINE scripts:
        one round trip for a refresh of many topics instead of one per topic.

        Args:
            writes: (topic, entries, removed) per topic.

        Returns:
            topic -> the expired entries deleted now.

        Raises:
            PresenceUnavailable: when Redis cannot be used.
        """
        now_ms = int(self.clock() * 1000)
        ttl_ms = max(1, int(self.ttl * 1000))
        calls: list[tuple[str, list[Any]]] = []
        expired: dict[str, list[dict[str, Any]]] = {}
        for topic, entries, removed in writes:
            expired.setdefault(topic, [])
            chunks = [entries[i:i + ENTRIES_PER_WRITE] for i in range(0, len(entries), ENTRIES_PER_WRITE)] or [()]
            for index, chunk in enumerate(chunks):
                args: list[Any] = [now_ms, now_ms + ttl_ms, ttl_ms, len(chunk)]
                for client_id, encoded in chunk:
                    args += (client_id, encoded)
                if index == len(chunks) - 1:
                    args += removed
                calls.append((topic, args))
        for first in range(0, len(calls), SCRIPTS_PER_PIPELINE):
            batch = calls[first:first + SCRIPTS_PER_PIPELINE]
            for (topic, _), result in zip(batch, await self._pipeline(self._write, batch)):
                expired[topic].extend(orjson.loads(raw) for raw in result if raw)
        return expired

    async def entries(self, topic: str) -> list[dict[str, Any]]:
        """Every live entry of topic in wire form (PRESENCE_RESULT's ``clients``).

        Raises:
            PresenceUnavailable: when Redis cannot be used.
        """
        live, flat = await self._call(self._read, topic, [int(self.clock() * 1000)])
        alive = set(live)
        return [orjson.loads(flat[i + 1]) for i in range(0, len(flat), 2) if flat[i] in alive]

    async def stats(self, topic: str) -> dict[str, int]:
        """``numClients`` and ``numUsers`` of topic.

        Raises:
            PresenceUnavailable: when Redis cannot be used.
        """
        return stats_of(await self.entries(topic))

    def delete_now(self, clients: dict[str, set[str]]) -> None:
        """Deletes entries synchronously, on a connection of its own: for a server whose loop
        (and the broker's) has stopped, so that its clients do not wait for the ttl.

        Args:
            clients: topic -> client ids.

        Raises:
            redis.RedisError: redis-py's errors (the caller logs them).
        """
        import redis

        if self.cluster:
            from redis.cluster import ClusterNode, RedisCluster

            parsed = parse_cluster_url(self.url)
            connection: Any = RedisCluster(
                startup_nodes=[ClusterNode(host, port) for host, port in parsed["nodes"]], ssl=parsed["ssl"],
                username=parsed["username"], password=parsed["password"],
                socket_connect_timeout=self.timeout, socket_timeout=self.timeout, **without_maintenance_notifications())
        else:
            connection = redis.Redis.from_url(self.url, socket_connect_timeout=self.timeout,
                                              socket_timeout=self.timeout, **without_maintenance_notifications())
        with connection as client:
            # A cluster pipeline sends each command to its key's shard (no script in it).
            pipeline = client.pipeline(transaction=False)
            for topic, ids in clients.items():
                entries, expiries = self.keys(topic)
                pipeline.hdel(entries, *ids)
                pipeline.zrem(expiries, *ids)
            pipeline.execute()

    async def aclose(self) -> None:
        """Closes the client (a later call opens a new one)."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def _connection(self) -> Any:
        if self._client is None and self.cluster:
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            self._client = cluster_client(self.url, timeout=self.timeout, retry=Retry(NoBackoff(), 1))
        if self._client is None:
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            # One retry: a connection that died while idle is only found out by using it.
            # A blocking pool: at most max_connections, a burst waits for a free one.
            self._client = bounded_client(self.url, max_connections=self.max_connections, timeout=self.timeout,
                                          retry=Retry(NoBackoff(), 1))
        return self._client

    async def _pipeline(self, script: _Script, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        from redis import exceptions

        client = self._connection()
        try:
            if self.cluster:
                return await self._gathered(client, script, calls)
            for attempt in range(2):
                pipeline = client.pipeline(transaction=False)
                for topic, args in calls:
                    pipeline.evalsha(script.sha, 2, *self.keys(topic), *args)
                results = await pipeline.execute(raise_on_error=False)
                if attempt == 0 and any(isinstance(r, exceptions.NoScriptError) for r in results):
                    # A restarted (or flushed) Redis forgot the script: load it once, then retry.
                    await client.script_load(script.source)
                    continue
                break
            for result in results:
                if isinstance(result, Exception):
                    raise result
            return results
        except (exceptions.ConnectionError, exceptions.TimeoutError, OSError, exceptions.ClusterError,
                exceptions.RedisClusterException) as exc:
            raise PresenceUnavailable(f"presence storage unreachable at {redact(self.url)}: {exc}") from exc
        except exceptions.ResponseError as exc:
            if str(exc).startswith(UNAVAILABLE_REPLIES):
                raise PresenceUnavailable(f"presence storage refused the write at {redact(self.url)}: {exc}") from exc
            raise

    async def _gathered(self, client: Any, script: _Script, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """The cluster's way of :meth:`_pipeline`: one EVALSHA per call (routed by its keys'
        slot), at most CLUSTER_CONCURRENCY in flight; a shard that forgot the script gets it
        with EVAL (which also caches it there). Raises the first failure."""
        from redis import exceptions

        # Slot map first, once: calls racing on a client that is not initialized yet fail
        # with lost connections (redis-py 8.0).
        await client.initialize()
        limit = asyncio.Semaphore(CLUSTER_CONCURRENCY)

        async def one(topic: str, args: Sequence[Any]) -> Any:
            keys = self.keys(topic)
            async with limit:
                try:
                    return await client.evalsha(script.sha, 2, *keys, *args)
                except exceptions.NoScriptError:
                    return await client.eval(script.source, 2, *keys, *args)

        results = await asyncio.gather(*(one(topic, args) for topic, args in calls), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return list(results)

    async def _call(self, script: _Script, topic: str, args: Sequence[Any]) -> Any:
        return (await self._pipeline(script, [(topic, args)]))[0]


def entry_pairs(entries: Sequence[Any]) -> list[tuple[str, bytes]]:
    """(client id, encoded) pairs of :class:`PresenceEntry` objects, for :meth:`RedisPresence.write`.

    Args:
        entries: PresenceEntry objects.
    """
    return [(entry.client_id, entry.encoded) for entry in entries]

