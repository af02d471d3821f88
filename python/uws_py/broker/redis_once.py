"""What a redis-py client may send again: the rule that keeps the Redis brokers and the Redis
history store (one Redis or a Cluster) from running one command twice.

A command that failed is sent again only when it certainly never left (:func:`certainly_not_sent`:
the connect failed, no connection could be had, a cluster node refused it unrun). One that may
have been written, a timeout or a connection lost after the write, is reported failed: Redis
may have run it (it ran it and the answer was lost, or a frozen Redis runs it when it resumes).
redis-py's own retries are off for such clients (:func:`no_retries`), since it would resend
after a lost connection.

What keeps that from costing the usual failure of an idle connection (Redis restarted, or
closed it: its end of stream waits to be read) is finding it before the write, so that the
command goes out on a fresh connection: redis-py's pool of one Redis does it when it hands out
a connection (``ConnectionPool.ensure_connection`` asks ``can_read()``); its cluster nodes do
not, and the cluster code calls :func:`drop_closed` on them. A Redis gone without a word (no
FIN) is found by the command timing out, reported failed.
"""

from __future__ import annotations

from typing import Any, Iterable

from .redact import redacting_logger

logger = redacting_logger("uws_py.broker")

# How redis-py words a failure to open a connection (redis.utils.format_error_message and
# Connection.connect_check_health): nothing of a command was written then.
_CONNECT_FAILED = (" connecting to ", "Timeout connecting to server")


def certainly_not_sent(exc: BaseException) -> bool:
    """Whether the command that failed with exc certainly did not reach (or was refused
    unrun by) Redis, so that sending it again cannot run it twice.

    True for: a connection that could not be opened; a pool with no free connection
    (``MaxConnectionsError``); for a cluster, no master known for the slot
    (``SlotNotCoveredError``), the cluster not reachable to read its slot map
    (``RedisClusterException``), a ``CLUSTERDOWN``, ``TRYAGAIN``, ``MOVED`` or ``ASK`` reply
    (redis-py follows the last three itself, up to its TTL: ``ClusterError``). False for
    everything else, a timeout or a connection lost after the write above all.

    Args:
        exc: what redis-py's client (plain or cluster) raised.
    """
    from redis import exceptions

    if isinstance(exc, (exceptions.RedisClusterException, exceptions.ClusterError, exceptions.TryAgainError,
                        exceptions.AskError, exceptions.MaxConnectionsError)):
        return True
    if isinstance(exc, (exceptions.ConnectionError, exceptions.TimeoutError)) and len(exc.args) == 1:
        message = str(exc.args[0])
        return message.startswith("Error") and _CONNECT_FAILED[0] in message or message == _CONNECT_FAILED[1]
    return False


def no_retries() -> Any:
    """A redis-py ``Retry`` that makes its client try each command once: its retry after a
    ``ConnectionError`` or ``TimeoutError`` would send again what Redis may have run. (A
    cluster client follows ``MOVED``/``ASK``/``TRYAGAIN`` all the same.)"""
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return Retry(NoBackoff(), 0)


async def drop_closed(connections: Iterable[Any], where: str) -> None:
    """Closes those of the idle redis-py asyncio connections that the server has closed (the
    end of stream, or anything unasked for, waits to be read), so that the next command
    opens a fresh one instead of failing on it after the write.

    Args:
        connections: idle connections (none of them carrying a command).
        where: the server, for the log.
    """
    for connection in tuple(connections):
        try:
            # can_read: data buffered or end of stream (it raises then); an idle connection has neither.
            if connection.is_connected and await connection.can_read():
                logger.debug("Redis connection to %s has data unasked for; reconnecting", where)
                await connection.disconnect()
        except Exception:
            logger.debug("Redis connection to %s was closed by the server; reconnecting", where)
            await connection.disconnect()
