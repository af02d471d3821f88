"""History kept in Redis, so every worker and machine sees one history and one offset sequence
per topic.

Per topic two keys share the hash tag ``{topic}`` (one Redis Cluster slot; a topic with a
brace in it is tagged by a digest, ``uws_py.broker.redis_cluster.hash_tag``): a stream
``uws:h:{topic}:s`` (one entry per publication, ID ``<offset>-0``, trimmed by ``MAXLEN size``)
and a hash ``uws:h:{topic}:m`` holding ``epoch`` and ``top``. One Lua script assigns the
offset, appends, sets the expiries and PUBLISHes on the broker's channel, so broker delivery
order is offset order. The stream expires ``ttl`` after the last publish, the position
``POSITION_TTL_FACTOR`` times later. A lost position (restart without persistence, eviction,
expiry) starts a new epoch, and its stale stream is deleted; a stream lost alone leaves a gap
between the kept position and what is read, which the recovery rule reports as
``recovered: false``.

Every method is a coroutine for the broker's loop (``RedisBroker.run``); the client is
created on first use, on that loop. Needs: ``maxmemory-policy`` ``noeviction`` or a
``volatile-*``/``allkeys-*`` policy (an eviction only costs an epoch); with ``appendonly yes``
the epoch and the history survive a Redis restart.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from ..broker.redact import redact
from ..broker.redis import CHANNEL_PREFIX
from ..broker.redis_cluster import cluster_channel, cluster_client, drop_closed_connections, hash_tag
from ..broker.redis_once import certainly_not_sent, no_retries
from ..broker.redis_pool import bounded_client, check_max_connections, no_free_connection
from .history import (
    DEFAULT_RECOVER_LIMIT,
    POSITION_TTL_FACTOR,
    HistoryMetrics,
    HistoryOptions,
    HistoryPage,
    HistoryPolicy,
    HistoryUnavailable,
    NoHistory,
    Position,
    Publication,
    Recovery,
    check_history_since,
    decide_recovery,
    new_epoch,
    recovery_precheck,
)

if TYPE_CHECKING:
    from ..broker.redis import RedisBroker

KEY_PREFIX = "uws:h:"
# Seconds to connect or to wait for one reply; past it the publish fails as UNAVAILABLE.
TIMEOUT = 2.0
# Connections the store opens to Redis at most (not in a cluster). Each call holds one only
# for its round trip; a burst of more concurrent calls (a reconnect storm's recoveries)
# waits for a free one, up to the store's timeout, instead of opening one each and keeping
# them all open afterwards.
MAX_CONNECTIONS = 16


# KEYS: stream, meta. ARGV: channel, origin, head, tail, size, ttl ms, position ttl ms, epoch
# to start if the position is gone. Returns {epoch, offset}. The channel message is framed as
# uws_py.broker.redis.parse_frame reads it.
PUBLISH_LUA = """
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  epoch = ARGV[8]
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'epoch', epoch, 'top', 0)
end
local top = string.format('%d', redis.call('HINCRBY', KEYS[2], 'top', 1))
local payload = ARGV[3] .. top .. ARGV[4]
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[5], top .. '-0', 'p', payload)
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[7])
redis.call('PUBLISH', ARGV[1], ARGV[2] .. ':' .. epoch .. ':' .. top .. '|' .. payload)
return {epoch, tonumber(top)}
"""

# KEYS: stream, meta. ARGV: epoch to start if the position is gone, position ttl ms, mode
# ('fwd', 'rev' or 'none'), the first ID to read, count. Returns {epoch, top, entries}: the
# position and the entries read in the same atomic step.
READ_LUA = """
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'epoch', ARGV[1], 'top', 0)
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return {ARGV[1], 0, {}}
end
local top = tonumber(redis.call('HGET', KEYS[2], 'top'))
local entries = {}
if ARGV[3] == 'fwd' then
  entries = redis.call('XRANGE', KEYS[1], ARGV[4], '+', 'COUNT', ARGV[5])
elseif ARGV[3] == 'rev' then
  entries = redis.call('XREVRANGE', KEYS[1], ARGV[4], '-', 'COUNT', ARGV[5])
end
return {epoch, top, entries}
"""

# Replies that mean "storage cannot take it now", not "the request is wrong".
UNAVAILABLE_REPLIES = ("OOM", "READONLY", "MASTERDOWN", "NOREPLICAS", "CLUSTERDOWN", "TRYAGAIN", "LOADING")


def sharded(script: str) -> str:
    """script with its PUBLISH made SPUBLISH (Redis Cluster: the channel is in the keys' slot)."""
    return script.replace("redis.call('PUBLISH',", "redis.call('SPUBLISH',")


class _Script:
    __slots__ = ("source", "sha")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


class RedisHistory:
    """The Redis store; the same answers as :class:`uws_py.realtime.history.MemoryHistory`."""

    def __init__(self, url: str, policy: HistoryPolicy, metrics: Optional[HistoryMetrics] = None, *,
                 origin: bytes = b"", channel_prefix: str = CHANNEL_PREFIX, key_prefix: str = KEY_PREFIX,
                 timeout: float = TIMEOUT, epochs: Callable[[], str] = new_epoch, cluster: bool = False,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        """A store that connects on first use.

        Args:
            url: ``redis://host:port/db``.
            policy: which topics keep history.
            metrics: counters to add to.
            origin: the publishing process's broker origin (its own copy is then recognised).
            channel_prefix: the broker's.
            key_prefix: of the two keys per topic.
            timeout: seconds per connect, per reply, and to wait for a free connection.
            epochs: makes a fresh epoch.
            cluster: the url is ``redis+cluster://...`` (redis-py's cluster client; the scripts
                ``SPUBLISH`` on the topic's sharded channel, in the slot of its keys).
            max_connections: connections to Redis at most (not with ``cluster``); more
                concurrent calls wait for one (up to ``timeout``, then HistoryUnavailable).
        """
        check_max_connections(max_connections)
        self.url = url
        self.policy = policy
        self.metrics = metrics if metrics is not None else HistoryMetrics()
        self.origin = origin
        self.channel_prefix = channel_prefix
        self.key_prefix = key_prefix
        self.timeout = timeout
        self.max_connections = max_connections
        self._epochs = epochs
        self._client: Any = None
        self.cluster = cluster
        # In a cluster the script's channel is sharded: SPUBLISH, in the slot of the keys.
        self._publish = _Script(sharded(PUBLISH_LUA) if cluster else PUBLISH_LUA)
        self._read = _Script(READ_LUA)

    @classmethod
    def for_broker(cls, broker: "RedisBroker", policy: HistoryPolicy,
                   metrics: Optional[HistoryMetrics] = None) -> "RedisHistory":
        """The store beside a broker: same Redis, same channels, same origin.

        Args:
            broker: the process's RedisBroker
            policy: as for the constructor.
            metrics: as for the constructor.
        """
        return cls(broker.url, policy, metrics, origin=broker.origin, channel_prefix=broker.prefix,
                   cluster=broker.cluster)

    def keys(self, topic: str) -> tuple[str, str]:
        """The stream and meta keys of topic (hash-tagged on the topic)."""
        tag = hash_tag(topic)
        base = f"{self.key_prefix}{{{tag}}}" + ("" if tag == topic else topic)
        return base + ":s", base + ":m"

    def channel(self, topic: str) -> str:
        """The broker channel the publish script sends topic's publications on."""
        return cluster_channel(self.channel_prefix, topic) if self.cluster else self.channel_prefix + topic

    async def publish(self, topic: str, head: bytes, tail: bytes) -> tuple[Position, Publication]:
        """Assigns the offset, appends and publishes to the broker channel, atomically.

        Args:
            topic: a history topic
            head: from ``history.message_parts``.
            tail: from ``history.message_parts``.

        Returns:
            the new position and the publication (the payload every process receives).

        Raises:
            NoHistory: for a plain topic
            HistoryUnavailable: when Redis cannot be used.
        """
        options = self._options(topic)
        ttl_ms = max(1, int(options.ttl * 1000))
        epoch, offset = await self._call(
            self._publish, self.keys(topic),
            (self.channel(topic), self.origin, head, tail, options.size, ttl_ms,
             ttl_ms * POSITION_TTL_FACTOR, self._epochs()),
        )
        offset = int(offset)
        return Position(epoch.decode(), offset), Publication(offset, head + b"%d" % offset + tail)

    async def publish_many(self, items: Sequence[tuple[str, bytes, bytes]]) -> list[Any]:
        """Publishes several, in the order given, in one round trip (a pipeline on one
        connection, so Redis runs them in that order; it starts with SCRIPT LOAD, so the
        script is there whatever happened to Redis's script cache).

        Args:
            items: ``(topic, head, tail)`` per publication.

        Returns:
            per item, ``(Position, Publication)`` as :meth:`publish` returns it, or the exception it
                failed with (NoHistory, HistoryUnavailable, a Redis ResponseError).
        """
        from redis import exceptions

        if self.cluster:
            # The topics' keys live in different slots (and shards): one script call each, in
            # order; a cluster pipeline cannot carry the keyless SCRIPT LOAD.
            answers: list[Any] = []
            for topic, head, tail in items:
                try:
                    answers.append(await self.publish(topic, head, tail))
                except Exception as exc:
                    answers.append(exc)
            return answers
        results: list[Any] = [None] * len(items)
        calls: list[tuple[int, bytes, bytes]] = []
        client = self._connection()
        pipe = client.pipeline(transaction=False)
        pipe.script_load(self._publish.source)
        for index, (topic, head, tail) in enumerate(items):
            try:
                options = self._options(topic)
            except NoHistory as exc:
                results[index] = exc
                continue
            ttl_ms = max(1, int(options.ttl * 1000))
            pipe.evalsha(self._publish.sha, 2, *self.keys(topic), self.channel(topic), self.origin,
                         head, tail, options.size, ttl_ms, ttl_ms * POSITION_TTL_FACTOR, self._epochs())
            calls.append((index, head, tail))
        if not calls:
            return results
        try:
            replies = await pipe.execute(raise_on_error=False)
        except (exceptions.ConnectionError, exceptions.TimeoutError, OSError) as exc:
            failure = self._failure(exc)
            for index, _, _ in calls:
                results[index] = failure
            return results
        finally:
            await pipe.reset()
        for (index, head, tail), reply in zip(calls, replies[1:]):
            if isinstance(reply, BaseException):
                results[index] = self._failure(reply)
                continue
            epoch, offset = reply
            offset = int(offset)
            results[index] = (Position(epoch.decode(), offset), Publication(offset, head + b"%d" % offset + tail))
        return results

    async def position(self, topic: str) -> Position:
        """The topic's current position (a new epoch at offset 0 if it has none).

        Raises:
            NoHistory: for a plain topic.
            HistoryUnavailable: when Redis cannot be used.
        """
        current, _ = await self._read_entries(topic, self._options(topic), "none", "-", 0)
        return current

    async def recover(self, topic: str, since: Position, limit: int = DEFAULT_RECOVER_LIMIT) -> Recovery:
        """The SUBSCRIBE recovery answer (``history.decide_recovery``), counted in metrics.

        Args:
            topic: a history topic
            since: the client's position
            limit: the recover limit.

        Raises:
            NoHistory: for a plain topic.
            HistoryUnavailable: when Redis cannot be used.
        """
        options = self._options(topic)
        current, found = await self._read_entries(topic, options, "fwd", f"{since.offset + 1}-0", max(limit, 1))
        if recovery_precheck(current, since, limit) is not None:
            found = []
        recovery = decide_recovery(current, since, found, limit)
        self.metrics.count_recovery(recovery)
        return recovery

    async def read(self, topic: str, since: Optional[Position] = None, limit: int = DEFAULT_RECOVER_LIMIT,
                   reverse: bool = False) -> HistoryPage:
        """A HISTORY page, as ``history.select_page`` defines it (since exclusive both ways).

        Raises:
            NoHistory: for a plain topic.
            UnrecoverablePosition: for a since from another epoch or ahead of the topic.
            HistoryUnavailable: when Redis cannot be used.
        """
        options = self._options(topic)
        if limit <= 0:
            mode, start = "none", "-"
        elif not reverse:
            mode, start = "fwd", "-" if since is None else f"{since.offset + 1}-0"
        elif since is None:
            mode, start = "rev", "+"
        elif since.offset > 1:
            mode, start = "rev", f"{since.offset - 1}-0"
        else:
            mode, start = "none", "-"
        current, found = await self._read_entries(topic, options, mode, start, max(limit, 1))
        check_history_since(topic, current, since)
        return HistoryPage(current, tuple(found))

    async def aclose(self) -> None:
        """Closes the client (a later call opens a new one)."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    # -- internals ------------------------------------------------------------------------------

    def _options(self, topic: str) -> HistoryOptions:
        options = self.policy.options_for(topic)
        if options is None:
            raise NoHistory(topic)
        return options

    async def _read_entries(self, topic: str, options: HistoryOptions, mode: str, start: str,
                            count: int) -> tuple[Position, list[Publication]]:
        ttl_ms = max(1, int(options.ttl * 1000)) * POSITION_TTL_FACTOR
        # The read script is idempotent (it starts a missing position with the epoch it is
        # given, the same both times): it may go again after a lost connection.
        epoch, top, entries = await self._call(
            self._read, self.keys(topic), (self._epochs(), ttl_ms, mode, start, count), idempotent=True
        )
        found = [Publication(int(entry_id.split(b"-", 1)[0]), dict(_pairs(fields))[b"p"])
                 for entry_id, fields in entries]
        return Position(epoch.decode(), int(top)), found

    def _connection(self) -> Any:
        # No retry inside redis-py (no_retries): it would send the publish script again after
        # a connection lost once it was written (or, in a cluster, after a timeout), storing
        # one publish at two offsets. _call decides what goes again. An idle connection Redis
        # closed (a restart) is replaced before the write: by redis-py's pool of one Redis
        # when it hands it out, by drop_closed_connections for a cluster's node.
        if self._client is None and self.cluster:
            self._client = cluster_client(self.url, timeout=self.timeout, retry=no_retries())
        if self._client is None:
            # A blocking pool: at most max_connections, a burst waits for a free one.
            self._client = bounded_client(self.url, max_connections=self.max_connections, timeout=self.timeout,
                                          retry=no_retries())
        return self._client

    async def _call(self, script: _Script, keys: tuple[str, str], args: tuple[Any, ...], *,
                    idempotent: bool = False) -> Any:
        """Runs script on keys and args; a call that failed goes again once if it certainly
        was not sent (no connection could be opened; a cluster with no master for the slot or
        CLUSTERDOWN, with the slot map read again), or, idempotent (a read), after any lost
        connection; never a publish that may have run."""
        from redis import exceptions

        client = self._connection()
        try:
            try:
                try:
                    if self.cluster:
                        await drop_closed_connections(client, keys[0])
                    return await client.evalsha(script.sha, len(keys), *keys, *args)
                except Exception as exc:
                    if not (certainly_not_sent(exc) or idempotent and isinstance(exc, exceptions.ConnectionError)):
                        raise
                    return await client.evalsha(script.sha, len(keys), *keys, *args)
            except exceptions.NoScriptError:
                # A restarted (or flushed) Redis forgot the script: load it once, then retry.
                if self.cluster:
                    await drop_closed_connections(client, None)  # SCRIPT LOAD goes to every master
                await client.script_load(script.source)
                return await client.evalsha(script.sha, len(keys), *keys, *args)
        except Exception as exc:
            raise self._failure(exc) from exc

    def _failure(self, exc: BaseException) -> BaseException:
        """What a failed command is reported as: HistoryUnavailable when storage could not be
        used (saying whether the write may still be applied), the error itself otherwise."""
        from redis import exceptions

        where = redact(self.url)
        if isinstance(exc, exceptions.ResponseError) and not isinstance(exc, exceptions.ClusterError):
            if str(exc).startswith(UNAVAILABLE_REPLIES):
                return HistoryUnavailable(f"history storage refused the write at {where}: {exc}")
            return exc
        if not isinstance(exc, (exceptions.ConnectionError, exceptions.TimeoutError, OSError, exceptions.ClusterError,
                                exceptions.RedisClusterException)):
            return exc
        if certainly_not_sent(exc) or no_free_connection(exc):
            return HistoryUnavailable(f"history storage unreachable at {where}: {exc}")
        if isinstance(exc, exceptions.TimeoutError):
            # Sent but not answered: a slow (frozen) Redis may still run it.
            return HistoryUnavailable(f"history storage did not answer within {self.timeout} s at {where} "
                                      f"(a write may still be applied)")
        # The connection was lost once the command was (or may have been) written: Redis may
        # have run it.
        return HistoryUnavailable(f"history storage connection lost at {where}: {exc} (a write may still be applied)")


def _pairs(flat: Any) -> Any:
    """A stream entry's fields come as [k1, v1, k2, v2, ...]."""
    return zip(flat[0::2], flat[1::2])
