"""Publishing from any Python process that has Redis but no server (a Django view, a Celery
task): what a RealtimeServer with ``broker=RedisBroker(url)`` would send, written to the same
Redis, so every worker delivers it to its subscribers.

- A plain topic: ``PUBLISH uws:<topic> <origin>|<MESSAGE>``, the broker's frame
  (:mod:`uws_py.broker.redis`), with an origin of the emitter's own, so every worker delivers it.
- A history topic: the history store's Lua script (:mod:`uws_py.realtime.history_redis`), which
  assigns the offset, appends to the topic's stream and publishes, atomically; the emitter
  returns the ``(epoch, offset)``. The emitter must know the server's history patterns, with
  the same size and ttl (``history=[("chat.*", 100, 300.0)]``): a topic it takes for a plain
  one would reach live subscribers without an offset and stay out of the history.
- ``send_to_user`` and ``disconnect_user`` go through the control topic ``#control``
  (:mod:`uws_py.realtime.users`).

:class:`Emitter` uses redis-py's blocking client; :class:`AsyncEmitter` its asyncio client.
"""

from __future__ import annotations

import uuid
from typing import Any, Optional, Sequence, Union

import orjson

from .broker.redis import CHANNEL_PREFIX
from .realtime.history import POSITION_TTL_FACTOR, HistoryOptions, HistoryPolicy, message_parts, new_epoch
from .realtime.history_redis import (KEY_PREFIX, MAX_CONNECTIONS, PUBLISH_LUA, TIMEOUT, bounded_client,
                                     check_max_connections)
from .realtime.users import CONTROL_TOPIC, check_close_code, is_reserved, user_topic

HistorySpec = Union[HistoryOptions, tuple]


def _policy(history: Sequence[HistorySpec]) -> HistoryPolicy:
    policy = HistoryPolicy()
    for spec in history:
        policy.add(spec if isinstance(spec, HistoryOptions) else HistoryOptions(*spec))
    return policy


class _Frames:
    """What the emitters send, without I/O: channel and frame of each operation."""

    def __init__(self, history: Sequence[HistorySpec], channel_prefix: str, key_prefix: str) -> None:
        self.policy = _policy(history)
        self.channel_prefix = channel_prefix
        self.key_prefix = key_prefix
        # Never a server's origin: every worker delivers what the emitter publishes.
        self.origin = b"emitter-" + uuid.uuid4().hex.encode()

    def check_topic(self, topic: Any) -> str:
        if not isinstance(topic, str) or not topic:
            raise ValueError("topic must be a non-empty string")
        if is_reserved(topic):
            raise ValueError(f"topic {topic!r} is reserved for the server (use send_to_user)")
        return topic

    def plain(self, topic: str, data: Any) -> tuple[str, bytes]:
        """The channel and frame of a plain publish."""
        payload = orjson.dumps({"type": "MESSAGE", "topic": topic, "data": data, "from": None})
        return self.channel_prefix + topic, self.origin + b"|" + payload

    def history_call(self, topic: str, options: HistoryOptions, data: Any) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of the publish script for a history topic."""
        head, tail = message_parts(topic, data, None)
        ttl_ms = max(1, int(options.ttl * 1000))
        base = f"{self.key_prefix}{{{topic}}}"
        return ([base + ":s", base + ":m"],
                [self.channel_prefix + topic, self.origin, head, tail, options.size, ttl_ms,
                 ttl_ms * POSITION_TTL_FACTOR, new_epoch()])

    def control(self, header: dict[str, Any], body: bytes = b"") -> tuple[str, bytes]:
        """The channel and frame of a control message."""
        return self.channel_prefix + CONTROL_TOPIC, self.origin + b"|" + orjson.dumps(header) + b"\n" + body

    def to_user(self, user_id: str, data: Any) -> tuple[str, bytes]:
        topic = user_topic(user_id)
        payload = orjson.dumps({"type": "MESSAGE", "topic": topic, "data": data, "from": None})
        return self.control({"op": "user", "user": user_id}, payload)

    def disconnect(self, user_id: str, code: int, reason: str) -> tuple[str, bytes]:
        check_close_code(code)
        return self.control({"op": "disconnect", "user": user_id, "code": code, "reason": reason})


class Emitter:
    """``Emitter("redis://host:port/db", history=[("chat.*", 100, 300.0)])``: publishes to a
    server's topics from a process without a server (blocking calls).

    Args:
        redis_url: the Redis the servers' RedisBroker uses.
        history: the servers' history patterns, each a HistoryOptions or ``(pattern, size, ttl)``,
            as given to :meth:`RealtimeServer.history` (``--history``): same sizes and ttls.
        channel_prefix: the broker's channel prefix (``uws:``).
        key_prefix: the history store's key prefix (``uws:h:``).
        client: a redis-py ``Redis`` to use instead of one made from the URL.
        max_connections: connections the client made from the URL opens at most; more
            concurrent calls wait for one (up to 2 s, then redis-py's ConnectionError).
    """

    def __init__(self, redis_url: str, history: Sequence[HistorySpec] = (), *, channel_prefix: str = CHANNEL_PREFIX,
                 key_prefix: str = KEY_PREFIX, client: Any = None, max_connections: int = MAX_CONNECTIONS) -> None:
        check_max_connections(max_connections)
        self.frames = _Frames(history, channel_prefix, key_prefix)
        if client is None:
            client = bounded_client(redis_url, max_connections=max_connections, timeout=TIMEOUT, asynchronous=False)
        self.client = client
        self._script = client.register_script(PUBLISH_LUA)

    def publish(self, topic: str, data: Any) -> Optional[dict[str, Any]]:
        """A server-originated MESSAGE (``from`` null) to every subscriber of topic in every worker.

        Args:
            topic: the topic
            data: the MESSAGE's ``data`` (JSON-encodable).

        Returns:
            ``{"epoch", "offset"}`` on a history topic, None on a plain one.

        Raises:
            ValueError: for a reserved topic; redis-py's errors when Redis cannot be used.
        """
        topic = self.frames.check_topic(topic)
        options = self.frames.policy.options_for(topic)
        if options is None:
            self.client.publish(*self.frames.plain(topic, data))
            return None
        keys, args = self.frames.history_call(topic, options, data)
        epoch, offset = self._script(keys=keys, args=args)
        return {"epoch": epoch.decode() if isinstance(epoch, bytes) else epoch, "offset": int(offset)}

    def send_to_user(self, user_id: str, data: Any) -> None:
        """A MESSAGE on ``#user:<user_id>`` to every connection of the user, in every worker.

        Args:
            user_id: the user id
            data: the MESSAGE's ``data``.
        """
        self.client.publish(*self.frames.to_user(user_id, data))

    def disconnect_user(self, user_id: str, code: int = 1000, reason: str = "") -> None:
        """Closes every connection of the user, in every worker.

        Args:
            user_id: the user id
            code: 1000 or 3000..4999 (ValueError otherwise)
            reason: the reason.
        """
        self.client.publish(*self.frames.disconnect(user_id, code, reason))

    def close(self) -> None:
        """Closes the Redis connections."""
        self.client.close()


class AsyncEmitter:
    """:class:`Emitter` for asyncio code: the same arguments, every method a coroutine.

    Args:
        redis_url: the Redis the servers' RedisBroker uses.
        history: the servers' history patterns (see :class:`Emitter`).
        channel_prefix: the broker's channel prefix.
        key_prefix: the history store's key prefix.
        client: a ``redis.asyncio.Redis`` to use instead of one made from the URL.
        max_connections: connections the client made from the URL opens at most; more
            concurrent calls wait for one (up to 2 s, then redis-py's ConnectionError).
    """

    def __init__(self, redis_url: str, history: Sequence[HistorySpec] = (), *, channel_prefix: str = CHANNEL_PREFIX,
                 key_prefix: str = KEY_PREFIX, client: Any = None, max_connections: int = MAX_CONNECTIONS) -> None:
        check_max_connections(max_connections)
        self.frames = _Frames(history, channel_prefix, key_prefix)
        if client is None:
            client = bounded_client(redis_url, max_connections=max_connections, timeout=TIMEOUT)
        self.client = client
        self._script = client.register_script(PUBLISH_LUA)

    async def publish(self, topic: str, data: Any) -> Optional[dict[str, Any]]:
        """See :meth:`Emitter.publish`."""
        topic = self.frames.check_topic(topic)
        options = self.frames.policy.options_for(topic)
        if options is None:
            await self.client.publish(*self.frames.plain(topic, data))
            return None
        keys, args = self.frames.history_call(topic, options, data)
        epoch, offset = await self._script(keys=keys, args=args)
        return {"epoch": epoch.decode() if isinstance(epoch, bytes) else epoch, "offset": int(offset)}

    async def send_to_user(self, user_id: str, data: Any) -> None:
        """See :meth:`Emitter.send_to_user`."""
        await self.client.publish(*self.frames.to_user(user_id, data))

    async def disconnect_user(self, user_id: str, code: int = 1000, reason: str = "") -> None:
        """See :meth:`Emitter.disconnect_user`."""
        await self.client.publish(*self.frames.disconnect(user_id, code, reason))

    async def aclose(self) -> None:
        """Closes the Redis connections."""
        await self.client.aclose()
