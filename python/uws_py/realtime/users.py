"""Users across workers: the connections of each user id in this worker, messages to a user
(on the per-user topic ``#user:<user id>``), disconnecting a user, and publishing to a topic
with some clients left out. With a broker, each of these is one message on the control topic
``#control``, which every worker follows; without one they stay in this process.

A control message is a JSON header, a newline, and for the sending operations the MESSAGE
payload exactly as the clients get it (encoded once, by the sender)::

    {"op":"user","user":"alice"}\\n{"type":"MESSAGE","topic":"#user:alice",...}
    {"op":"disconnect","user":"alice","code":4000,"reason":"banned"}
    {"op":"publish","topic":"chat.1","exclude":["3f2a9c0d41b7e865"]}\\n{"type":"MESSAGE",...}

Clients cannot SUBSCRIBE, PUBLISH, ask HISTORY or PRESENCE of the reserved topics (FORBIDDEN).
Every method runs on the server's loop thread.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional

import orjson

from .protocol import TEXT, encode

if TYPE_CHECKING:
    from ..broker import Broker
    from .session import Client

logger = logging.getLogger("uws_py.realtime")

USER_TOPIC_PREFIX = "#user:"
CONTROL_TOPIC = "#control"


def user_topic(user_id: str) -> str:
    """The topic of MESSAGEs sent to one user (``#user:alice``).

    Args:
        user_id: the user id (the token's user claim, as a string).
    """
    return USER_TOPIC_PREFIX + user_id


def is_reserved(topic: str) -> bool:
    """Whether only the server may use topic: the per-user topics and the control topic.

    Args:
        topic: the topic.
    """
    return topic.startswith(USER_TOPIC_PREFIX) or topic == CONTROL_TOPIC


def check_close_code(code: int) -> None:
    """Raises ValueError unless code is one an application may close with: 1000, or
    3000..4999 (registered and private codes).

    Args:
        code: the close code.
    """
    if isinstance(code, bool) or not isinstance(code, int) or not (code == 1000 or 3000 <= code <= 4999):
        raise ValueError(f"close code must be 1000 or 3000..4999, got {code!r}")


class Users:
    """The user operations of one worker.

    Args:
        clients: id -> Client of this worker's open connections.
        publish_local: the core's ``publish(topic, payload, opcode)``.
        broker: carries control messages to the other workers; None keeps them local.
    """

    def __init__(self, clients: dict[str, "Client"], publish_local: Callable[[str, bytes, int], bool],
                 broker: Optional["Broker"] = None) -> None:
        self.clients = clients
        self.publish_local = publish_local
        self.broker = broker
        self.by_user: dict[str, dict[str, "Client"]] = {}
        self.control_sent = 0
        self.control_received = 0
        # members(topic) -> the local subscribers when known without a scan (presence topics).
        self.members: Optional[Callable[[str], Optional[Iterable["Client"]]]] = None
        # op -> handler(header, body) of control messages defined by other modules (the server API's).
        self.ops: dict[str, Callable[[dict[str, Any], bytes], None]] = {}

    # -- the index (connect and disconnect hooks) ------------------------------------------------

    def opened(self, client: "Client") -> None:
        """A connection opened: indexed under its user id, if it has one.

        Args:
            client: the connection.
        """
        if client.user_id is not None:
            self.by_user.setdefault(client.user_id, {})[client.id] = client

    def closed(self, client: "Client", code: int = 1000) -> None:
        """A connection closed: out of the index.

        Args:
            client: the connection
            code: its close code (unused).
        """
        if client.user_id is None:
            return
        connections = self.by_user.get(client.user_id)
        if connections is not None:
            connections.pop(client.id, None)
            if not connections:
                del self.by_user[client.user_id]

    def connections(self, user_id: str) -> list["Client"]:
        """This worker's open connections of a user.

        Args:
            user_id: the user id.
        """
        return list(self.by_user.get(user_id, {}).values())

    # -- operations -----------------------------------------------------------------------------

    def send_to_user(self, user_id: str, data: Any) -> int:
        """A MESSAGE on ``#user:<user_id>`` (``from`` null) to every connection of the user,
        in every worker. Returns how many connections of this worker got it.

        Args:
            user_id: the user id
            data: the MESSAGE's ``data``.
        """
        topic = user_topic(user_id)
        payload = encode({"type": "MESSAGE", "topic": topic, "data": data, "from": None})
        self._broadcast({"op": "user", "user": user_id}, payload)
        return self._to_user(user_id, payload)

    def disconnect_user(self, user_id: str, code: int = 1000, reason: str = "") -> int:
        """Closes every connection of the user, in every worker, with code and reason.
        Returns how many connections of this worker it closed.

        Args:
            user_id: the user id
            code: 1000 or 3000..4999
            reason: the close reason.
        """
        check_close_code(code)
        self._broadcast({"op": "disconnect", "user": user_id, "code": code, "reason": reason}, b"")
        return self._disconnect(user_id, code, reason)

    def publish_excluding(self, topic: str, payload: bytes, exclude: Iterable[str]) -> None:
        """Sends payload (a MESSAGE of topic) to its subscribers in every worker except the
        clients whose ids are in exclude.

        Args:
            topic: a plain topic
            payload: the encoded MESSAGE
            exclude: client ids.
        """
        excluded = list(exclude)
        self._broadcast({"op": "publish", "topic": topic, "exclude": excluded}, payload)
        self._publish_excluding(topic, payload, set(excluded))

    # -- the control topic -------------------------------------------------------------------------

    def intercept(self, topic: str, payload: bytes) -> bool:
        """The broker's interceptor: True (consumed) for a control message, which is applied here.

        Args:
            topic: the delivery's topic
            payload: what the broker delivered.
        """
        if topic != CONTROL_TOPIC:
            return False
        self.control_received += 1
        head, _, body = payload.partition(b"\n")
        try:
            header = orjson.loads(head)
            op = header["op"]
            if op == "user":
                self._to_user(str(header["user"]), body)
            elif op == "disconnect":
                self._disconnect(str(header["user"]), int(header["code"]), str(header["reason"]))
            elif op == "publish":
                self._publish_excluding(str(header["topic"]), body, set(header["exclude"]))
            elif op in self.ops:
                self.ops[op](header, body)
            else:
                logger.warning("ignoring a control message with unknown op %r", op)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            logger.warning("ignoring a malformed control message: %s", exc)
        return True

    def control(self, header: dict[str, Any], body: bytes = b"") -> None:
        """Sends a control message to every other worker (nothing without a broker); its ``op``
        must be one of :attr:`ops` there.

        Args:
            header: the JSON header (with ``op``)
            body: what follows the newline.
        """
        self._broadcast(header, body)

    def _broadcast(self, header: dict[str, Any], body: bytes) -> None:
        if self.broker is None:
            return
        self.control_sent += 1
        self.broker.publish(CONTROL_TOPIC, orjson.dumps(header) + b"\n" + body)

    def _to_user(self, user_id: str, payload: bytes) -> int:
        sent = 0
        for client in self.connections(user_id):
            if client.ws is not None and not client.closed:
                client.ws.send(payload, TEXT)
                sent += 1
        return sent

    def _disconnect(self, user_id: str, code: int, reason: str) -> int:
        connections = self.connections(user_id)
        for client in connections:
            client.close(code, reason)
        return len(connections)

    def _publish_excluding(self, topic: str, payload: bytes, excluded: set[str]) -> None:
        local = [self.clients[client_id] for client_id in excluded if client_id in self.clients]
        subscribed = [c for c in local if c.ws is not None and not c.closed and c.ws.is_subscribed(topic)]
        if not subscribed:
            self.publish_local(topic, payload, TEXT)
            return
        if len(subscribed) == 1:
            # The core's own fan-out skips the publishing socket: one excluded client costs nothing.
            subscribed[0].ws.publish(topic, payload, TEXT)
            return
        known = self.members(topic) if self.members is not None else None
        # Several local clients left out: each other subscriber is sent to on its own, from the
        # presence members when the topic has presence, else from a scan of this worker's clients.
        candidates = known if known is not None else self.clients.values()
        for client in list(candidates):
            ws = client.ws
            if client.id not in excluded and ws is not None and not client.closed and ws.is_subscribed(topic):
                ws.send(payload, TEXT)
