"""redis-py clients whose pool opens a bounded number of connections to one Redis.

redis-py's default pool opens a connection for every concurrent call and keeps all of them open
afterwards; with ``max_connections`` set it raises ``Too many connections`` at once when a call
finds them all busy. The ``BlockingConnectionPool`` used here makes such a call wait for a free
connection instead, up to a timeout.
"""

from __future__ import annotations

from typing import Any


def without_maintenance_notifications() -> dict[str, Any]:
    """Client keyword arguments that keep redis-py from asking Redis for maintenance
    notifications (``CLIENT MAINT_NOTIFICATIONS``, redis-py 8.1 on, RESP3): a Redis that does
    not know the command refuses it, and redis-py logs "Failed to enable maintenance
    notifications" on every new connection. Empty for a redis-py without the option.

    Returns:
        ``{"maint_notifications_config": MaintNotificationsConfig(enabled=False)}``, or ``{}``.
    """
    try:
        from redis.maint_notifications import MaintNotificationsConfig
    except ImportError:
        return {}
    return {"maint_notifications_config": MaintNotificationsConfig(enabled=False)}


def check_max_connections(value: Any) -> int:
    """value if it is a positive int (a bool is not); ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"max_connections must be a positive int, not {value!r}")
    return value


# How redis-py's BlockingConnectionPool words a call that found no free connection in time.
NO_FREE_CONNECTION = "No connection available."


def no_free_connection(exc: BaseException) -> bool:
    """Whether exc is a bounded client's call giving up on waiting for a free connection
    (nothing of it was sent)."""
    from redis import exceptions

    return isinstance(exc, exceptions.ConnectionError) and exc.args == (NO_FREE_CONNECTION,)


def bounded_client(url: str, *, max_connections: int, timeout: float, retry: Any = None,
                   asynchronous: bool = True, **options: Any) -> Any:
    """A redis-py client whose pool opens at most max_connections to the Redis at url.

    A call holds a connection only for its round trip; a call that finds all of them busy
    waits for a free one, up to timeout, then fails with redis-py's ConnectionError
    (``No connection available.``), which the stores report as unavailable storage.

    Args:
        url: ``redis://host:port/db`` (not a cluster: redis-py's cluster client has its own
            per-node pools).
        max_connections: connections open at most (a positive int).
        timeout: seconds per connect, per reply, and to wait for a free connection.
        retry: a redis-py ``Retry`` for a connection found dead, or None.
        asynchronous: a ``redis.asyncio.Redis`` (True) or a blocking ``redis.Redis``.
        options: more connection keyword arguments; they replace the defaults above
            (``socket_timeout=None``: no limit per reply).

    Returns:
        The client; closing it (``aclose()`` / ``close()``) closes the pool too.
    """
    check_max_connections(max_connections)
    if asynchronous:
        import redis.asyncio as module
    else:
        import redis as module  # type: ignore[no-redef]
    connection: dict[str, Any] = {"socket_connect_timeout": timeout, "socket_timeout": timeout,
                                  **without_maintenance_notifications()}
    if retry is not None:
        connection["retry"] = retry
    connection.update(options)
    pool = module.BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=timeout, **connection)
    return module.Redis.from_pool(pool)
