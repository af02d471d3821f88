"""The server API: ``POST <api_path>/<method>`` with ``Authorization: apikey <key>``, JSON in
and out, for backends that publish, disconnect users or ask for presence without holding a
WebSocket (docs/reference/server-api.md has every method).

Every method is callback-driven on the server's loop thread: a method that needs Redis or
other workers answers later (``res.end`` from a loop callback, after ``res.on_aborted`` was
set), so the API works the same under ``run()`` and ``serve()`` and never blocks the loop.

Across workers (with a broker) the API uses the control topic of :mod:`uws_py.realtime.users`:
``disconnect``, ``subscribe`` and ``unsubscribe`` are one control message each; ``info`` and
``channels`` ask every worker through :mod:`uws_py.realtime.api_gather`.
"""

from __future__ import annotations

import fnmatch
import hmac
import logging
import os
import time
import uuid
from typing import TYPE_CHECKING, Any, Callable, Optional

import orjson

from .._version import __version__
from ..broker.redact import redact
from .api_gather import GATHER_TIMEOUT, Gatherer
from .api_idempotency import DEFAULT_IDEMPOTENCY_TTL, Idempotent, MemoryIdempotency, RedisIdempotency
from .history import HistoryError, message_parts, parse_limit, parse_since
from .presence import NoPresence, PresenceUnavailable
from .protocol import TEXT
from .users import check_close_code, is_reserved

if TYPE_CHECKING:
    from .server import Engine

logger = logging.getLogger("uws_py.realtime")

DEFAULT_API_PATH = "/api"
# The largest request body, in bytes; more is refused with 413 before it is parsed.
MAX_BODY_SIZE = 64 * 1024
# The shortest API key accepted (a guessable key is refused at startup).
MIN_KEY_LENGTH = 16
# Commands of one batch, topics of one broadcast.
MAX_BATCH_COMMANDS = 100
MAX_BROADCAST_TOPICS = 1000
MAX_IDEMPOTENCY_KEY_LENGTH = 255

_STATUS = {200: "200 OK", 400: "400 Bad Request", 401: "401 Unauthorized", 404: "404 Not Found",
           405: "405 Method Not Allowed", 409: "409 Conflict", 413: "413 Payload Too Large",
           500: "500 Internal Server Error", 503: "503 Service Unavailable"}

Done = Callable[[Any], None]


class ApiError(Exception):
    """A refused API request: the HTTP status, a code and a message for the caller."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def to_wire(self) -> dict[str, Any]:
        """The ``{"code", "message"}`` of the error response."""
        return {"code": self.code, "message": self.message}


def bad_request(message: str) -> ApiError:
    """400 BAD_REQUEST with message."""
    return ApiError(400, "BAD_REQUEST", message)


def check_key(expected: bytes, authorization: Optional[str]) -> bool:
    """Whether the Authorization header is ``apikey <expected>``, compared in constant time.

    Args:
        expected: the configured key
        authorization: the header's value, None if absent.
    """
    if not authorization:
        return False
    scheme, _, given = authorization.strip().partition(" ")
    # compare_digest runs for every well-formed header: a wrong key takes as long as a right one.
    matches = hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), expected)
    return scheme.lower() == "apikey" and matches


def parse_body(body: bytes) -> dict[str, Any]:
    """The request's parameters: a JSON object (an empty body is ``{}``).

    Args:
        body: the request body.

    Raises:
        ApiError: 400 for malformed JSON or a value that is not an object.
    """
    if not body.strip():
        return {}
    try:
        params = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"malformed JSON: {exc}") from None
    if not isinstance(params, dict):
        raise bad_request("the body must be a JSON object")
    return params


def _string(params: dict[str, Any], name: str, default: Optional[str] = None) -> str:
    value = params.get(name, default)
    if not isinstance(value, str) or not value:
        raise bad_request(f"field {name!r} must be a non-empty string")
    return value


def _topic(params: dict[str, Any], name: str = "topic") -> str:
    topic = _string(params, name)
    if is_reserved(topic):
        raise bad_request(f"topic {topic!r} is reserved for the server")
    return topic


def _idempotency_key(params: dict[str, Any]) -> Optional[str]:
    key = params.get("idempotency_key")
    if key is None:
        return None
    if not isinstance(key, str) or not key or len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise bad_request(f"field 'idempotency_key' must be a string of 1..{MAX_IDEMPOTENCY_KEY_LENGTH} characters")
    return key


def _unavailable(exc: BaseException) -> ApiError:
    return ApiError(503, "UNAVAILABLE", redact(f"storage unavailable: {exc}"))


def _in_progress() -> ApiError:
    return ApiError(409, "IN_PROGRESS", "a request with this idempotency_key is still running; retry later")


def _history_error(exc: HistoryError) -> ApiError:
    if exc.code == "UNAVAILABLE":
        return ApiError(503, exc.code, redact(str(exc)))
    if exc.code == "INVALID_MESSAGE":
        return bad_request(str(exc))
    return ApiError(400, exc.code, str(exc))


class ServerApi:
    """The API of one worker.

    Args:
        engine: the server's engine (pub/sub, history, presence, users).
        key: the API key (``MIN_KEY_LENGTH`` characters at least).
        set_timeout: the loop's ``set_timeout(seconds, fn)``.
        local_topics: topic -> local subscribers, kept from the core's subscription events.
        idempotency_ttl: seconds an idempotency key is kept.
        gather_timeout: seconds info and channels wait for the other workers.
    """

    def __init__(self, engine: "Engine", key: str, set_timeout: Callable[[float, Callable[[], Any]], Any],
                 local_topics: Callable[[], dict[str, int]], idempotency_ttl: float = DEFAULT_IDEMPOTENCY_TTL,
                 gather_timeout: float = GATHER_TIMEOUT) -> None:
        check_api_key(key)
        self.engine = engine
        self.key = key.encode("utf-8")
        self.set_timeout = set_timeout
        self.local_topics = local_topics
        self.started = time.monotonic()
        broker = engine.options.broker
        self.broker = broker
        self.worker = broker.origin.decode() if broker is not None and hasattr(broker, "origin") \
            else uuid.uuid4().hex
        store: Any = RedisIdempotency(broker, idempotency_ttl) if broker is not None and hasattr(broker, "run") \
            else MemoryIdempotency(idempotency_ttl)
        self.idempotent = Idempotent(store, set_timeout)
        self.methods: dict[str, Callable[[dict[str, Any], Done], None]] = {
            "publish": self.publish, "broadcast": self.broadcast, "disconnect": self.disconnect,
            "subscribe": self.subscribe, "unsubscribe": self.unsubscribe, "presence": self.presence,
            "presence_stats": self.presence_stats, "history": self.history, "channels": self.channels,
            "info": self.info, "batch": self.batch,
        }
        # (method, HTTP status) -> requests answered: uws_api_requests_total.
        self.requests: dict[tuple[str, int], int] = {}
        engine.metrics.api_requests = self.requests
        engine.users.ops["api.subscribe"] = self._remote_subscription
        self.gatherer = Gatherer(engine.users, broker, self.worker, self.snapshot, set_timeout,
                                 store.client if isinstance(store, RedisIdempotency) else None, gather_timeout)

    # -- HTTP ---------------------------------------------------------------------------------

    def install(self, app: Any, path: str) -> None:
        """Routes ``<path>/<method>`` (every HTTP method: others than POST get 405) on app.

        Args:
            app: the server's App
            path: the API's path, e.g. ``/api``.
        """
        base = path.rstrip("/")
        app.any(base + "/:method", self.handle)
        app.any(base + "/*", self.handle)

    def handle(self, res: Any, req: Any) -> None:
        """The route's handler: checks key, HTTP method and size, reads the body, answers later."""
        name = req.get_parameter(0) or ""
        answer = _Answer(res, self.requests, name if name in self.methods else "unknown")
        res.on_aborted(answer.abort)
        if not check_key(self.key, req.get_header("authorization")):
            answer.send(ApiError(401, "UNAUTHORIZED", "missing or wrong API key (Authorization: apikey <key>)"))
            return
        if req.get_method() != "post":
            answer.send(ApiError(405, "METHOD_NOT_ALLOWED", "the server API takes POST only"), allow="POST")
            return
        method = name
        if method not in self.methods:
            answer.send(ApiError(404, "NOT_FOUND", f"unknown method {method!r}"))
            return
        length = req.get_header("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY_SIZE:
            answer.send(ApiError(413, "PAYLOAD_TOO_LARGE", f"the body has at most {MAX_BODY_SIZE} bytes"))
            return
        chunks: list[bytes] = []
        size = 0

        def on_data(chunk: bytes, last: bool) -> None:
            nonlocal size
            if answer.finished:
                return
            size += len(chunk)
            if size > MAX_BODY_SIZE:
                answer.send(ApiError(413, "PAYLOAD_TOO_LARGE", f"the body has at most {MAX_BODY_SIZE} bytes"))
                return
            chunks.append(bytes(chunk))
            if last:
                self.request(method, b"".join(chunks), answer.send)

        res.on_data(on_data)

    def request(self, method: str, body: bytes, done: Done) -> None:
        """One request's body, parsed and dispatched; done gets the result or an ApiError.

        Args:
            method: the API method
            body: the raw body
            done: receives the answer.
        """
        try:
            params = parse_body(body)
        except ApiError as exc:
            done(exc)
            return
        self.call(method, params, done)

    def call(self, method: str, params: Any, done: Done) -> None:
        """Runs one method; done gets its result dict or an ApiError (exactly once).

        Args:
            method: the method's name
            params: its parameters
            done: receives the answer.
        """
        handler = self.methods.get(method)
        if handler is None:
            done(ApiError(404, "NOT_FOUND", f"unknown method {method!r}"))
            return
        if not isinstance(params, dict):
            done(bad_request("params must be a JSON object"))
            return
        answered = False

        def once(result: Any) -> None:
            nonlocal answered
            if answered:
                return
            answered = True
            done(result)

        try:
            handler(params, once)
        except ApiError as exc:
            once(exc)
        except Exception:
            logger.exception("server API method %r failed", method)
            once(ApiError(500, "INTERNAL", "internal error"))

    # -- publish, broadcast --------------------------------------------------------------------

    def publish(self, params: dict[str, Any], done: Done) -> None:
        """``{topic, data, idempotency_key?}`` -> ``{}``, or ``{offset, epoch}`` on a history topic."""
        topic = _topic(params)
        if "data" not in params:
            raise bad_request("field 'data' is required")
        data = params["data"]
        key = _idempotency_key(params)
        self.idempotent.run(None if key is None else "publish:" + key,
                            lambda finish: self._publish(topic, data, finish), done, _in_progress, _unavailable)

    def broadcast(self, params: dict[str, Any], done: Done) -> None:
        """``{topics, data, idempotency_key?}`` -> ``{responses: [...]}``, one per topic in order."""
        topics = params.get("topics")
        if not isinstance(topics, list) or not 1 <= len(topics) <= MAX_BROADCAST_TOPICS:
            raise bad_request(f"field 'topics' must be a list of 1..{MAX_BROADCAST_TOPICS} topics")
        checked = [_topic({"topic": topic}) for topic in topics]
        if "data" not in params:
            raise bad_request("field 'data' is required")
        data = params["data"]
        key = _idempotency_key(params)

        def run(finish: Done) -> None:
            responses: list[Any] = [None] * len(checked)
            remaining = len(checked)

            def one(index: int, result: Any) -> None:
                nonlocal remaining
                topic = checked[index]
                responses[index] = {"topic": topic, "error": result.to_wire()} if isinstance(result, ApiError) \
                    else {"topic": topic, **result}
                remaining -= 1
                if remaining == 0:
                    finish({"responses": responses})

            for index, topic in enumerate(checked):
                self._publish(topic, data, lambda result, index=index: one(index, result))

        self.idempotent.run(None if key is None else "broadcast:" + key, run, done, _in_progress, _unavailable)

    def _publish(self, topic: str, data: Any, done: Done) -> None:
        engine = self.engine
        pubsub = engine.pubsub
        if len(topic) > pubsub.max_topic_length:
            done(bad_request(f"a topic has at most {pubsub.max_topic_length} characters"))
            return
        if not pubsub.is_history_topic(topic):
            if self.broker is None:
                pubsub.publish(topic, data)
                done({})
                return
            pubsub.publish(topic, data, lambda ok: done({} if ok else _unavailable(ConnectionError("broker"))))
            return
        head, tail = message_parts(topic, data, None)
        relay = pubsub.relay
        if relay is None:
            position, publication = pubsub.history.publish(topic, head, tail)
            engine.publish_local(topic, publication.payload, TEXT)
            done(position.to_wire())
            return
        store = relay.store

        def stored(result: Any) -> None:
            if isinstance(result, HistoryError):
                done(_history_error(result))
            elif isinstance(result, BaseException):
                done(_unavailable(result))
            else:
                done(result[0].to_wire())

        relay.broker.run(lambda: store.publish(topic, head, tail), stored)

    # -- users -----------------------------------------------------------------------------------

    def disconnect(self, params: dict[str, Any], done: Done) -> None:
        """``{user, code?, reason?}`` -> ``{}``: every connection of the user, in every worker."""
        user = _string(params, "user")
        code = params.get("code", 1000)
        reason = params.get("reason", "")
        if not isinstance(reason, str) or len(reason.encode()) > 123:
            raise bad_request("field 'reason' must be a string of at most 123 bytes")
        try:
            check_close_code(code)
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        self.engine.users.disconnect_user(user, code, reason)
        done({})

    def subscribe(self, params: dict[str, Any], done: Done) -> None:
        """``{user, topic}`` -> ``{}``: the user's connections, in every worker, subscribe.

        Server-side, as Centrifugo's server API: the backend calling it has decided, so no
        permission is checked here. The token's topics claim, the ``authorize_topic`` hook and
        ``max_subscriptions`` are not applied; only reserved topics and ``max_topic_length``
        are refused. Check permissions before calling it.
        """
        self._subscription(params, True, done)

    def unsubscribe(self, params: dict[str, Any], done: Done) -> None:
        """``{user, topic}`` -> ``{}``: the user's connections, in every worker, unsubscribe."""
        self._subscription(params, False, done)

    def _subscription(self, params: dict[str, Any], subscribe: bool, done: Done) -> None:
        user, topic = _string(params, "user"), _topic(params)
        if len(topic) > self.engine.pubsub.max_topic_length:
            raise bad_request(f"a topic has at most {self.engine.pubsub.max_topic_length} characters")
        self.engine.users.control({"op": "api.subscribe", "user": user, "topic": topic, "subscribe": subscribe})
        self._apply_subscription(user, topic, subscribe)
        done({})

    def _remote_subscription(self, header: dict[str, Any], body: bytes) -> None:
        self._apply_subscription(str(header["user"]), str(header["topic"]), bool(header["subscribe"]))

    def _apply_subscription(self, user: str, topic: str, subscribe: bool) -> None:
        """This worker's connections of user (un)subscribe topic, each told by a push:
        SUBSCRIBED (with the position on a history topic) or UNSUBSCRIBED ``reason: "server"``."""
        pubsub = self.engine.pubsub
        history = pubsub.is_history_topic(topic)
        for client in self.engine.users.connections(user):
            ws = client.ws
            if ws is None or client.closed:
                continue
            if not subscribe:
                if ws.unsubscribe(topic):
                    client.send({"type": "UNSUBSCRIBED", "topic": topic, "reason": "server"})
                continue
            if ws.is_subscribed(topic):
                continue
            if history and pubsub.relay is not None:
                pubsub.relay.subscribe(client, topic, None, None)
            elif history:
                ws.subscribe(topic)
                client.send({"type": "SUBSCRIBED", "topic": topic, **pubsub.history.position(topic).to_wire(),
                             "wasRecovering": False, "recovered": False})
            else:
                ws.subscribe(topic)
                client.send({"type": "SUBSCRIBED", "topic": topic})

    # -- presence, history ------------------------------------------------------------------------

    def presence(self, params: dict[str, Any], done: Done) -> None:
        """``{topic}`` -> ``{clients: [{clientId, userId, info}]}``."""
        self.engine.presence.entries(_string(params, "topic"),
                                     lambda result: done(self._presence_answer(result, "clients")))

    def presence_stats(self, params: dict[str, Any], done: Done) -> None:
        """``{topic}`` -> ``{numClients, numUsers}``."""
        self.engine.presence.stats(_string(params, "topic"), lambda result: done(self._presence_answer(result)))

    @staticmethod
    def _presence_answer(result: Any, field: Optional[str] = None) -> Any:
        if isinstance(result, NoPresence):
            return ApiError(400, "NO_PRESENCE", str(result))
        if isinstance(result, PresenceUnavailable):
            return _unavailable(result)
        if isinstance(result, BaseException):
            return _unavailable(result)
        return {field: result} if field is not None else dict(result)

    def history(self, params: dict[str, Any], done: Done) -> None:
        """``{topic, limit?, since?, reverse?}`` -> ``{epoch, offset, publications}``."""
        topic = _string(params, "topic")
        pubsub = self.engine.pubsub
        reverse = params.get("reverse", False)
        if type(reverse) is not bool:
            raise bad_request("field 'reverse' must be a boolean")
        if not pubsub.is_history_topic(topic):
            raise ApiError(400, "NO_HISTORY", f"topic {topic!r} keeps no history")
        try:
            limit = parse_limit(params.get("limit"), self.engine.options.history_recover_limit)
            since = parse_since(params["since"]) if params.get("since") is not None else None
        except HistoryError as exc:
            raise _history_error(exc) from None

        def answer(page: Any) -> None:
            if isinstance(page, HistoryError):
                done(_history_error(page))
            elif isinstance(page, BaseException):
                done(_unavailable(page))
            else:
                done({**page.position.to_wire(), "publications": [p.to_wire() for p in page.publications]})

        relay = pubsub.relay
        if relay is None:
            try:
                page = pubsub.history.read(topic, since, limit, reverse)
            except HistoryError as exc:
                raise _history_error(exc) from None
            answer(page)
            return
        store = relay.store
        relay.broker.run(lambda: store.read(topic, since, limit, reverse), answer)

    # -- channels, info: every worker's answer ------------------------------------------------------

    def channels(self, params: dict[str, Any], done: Done) -> None:
        """``{pattern?}`` -> ``{channels: {topic: subscribers}}`` summed over every worker."""
        pattern = params.get("pattern")
        if pattern is not None and (not isinstance(pattern, str) or not pattern):
            raise bad_request("field 'pattern' must be a non-empty string")

        def merge(answers: list[dict[str, Any]]) -> None:
            total: dict[str, int] = {}
            for answer in answers:
                for topic, count in answer.get("channels", {}).items():
                    if pattern is None or fnmatch.fnmatchcase(topic, pattern):
                        total[topic] = total.get(topic, 0) + int(count)
            done({"channels": dict(sorted(total.items()))})

        self.gatherer.gather("channels", merge)

    def info(self, params: dict[str, Any], done: Done) -> None:
        """``{}`` -> ``{workers: [{worker, pid, connections, topics, uptime, version}]}``."""
        self.gatherer.gather("info", lambda answers: done({"workers": sorted(answers, key=lambda a: a["worker"])}))

    def snapshot(self, what: str) -> dict[str, Any]:
        """This worker's answer to info or channels."""
        topics = {topic: count for topic, count in self.local_topics().items() if not is_reserved(topic)}
        if what == "channels":
            return {"channels": topics}
        return {"worker": self.worker, "pid": os.getpid(), "connections": len(self.engine.clients),
                "topics": len(topics), "uptime": round(time.monotonic() - self.started, 3),
                "version": __version__}

    # -- batch ---------------------------------------------------------------------------------

    def batch(self, params: dict[str, Any], done: Done) -> None:
        """``{commands: [{method, params}]}`` -> ``{replies: [{result} | {error}]}``, run in order."""
        commands = params.get("commands")
        if not isinstance(commands, list) or not 1 <= len(commands) <= MAX_BATCH_COMMANDS:
            raise bad_request(f"field 'commands' must be a list of 1..{MAX_BATCH_COMMANDS} commands")
        replies: list[dict[str, Any]] = []

        def step(index: int) -> None:
            if index == len(commands):
                done({"replies": replies})
                return
            command = commands[index]
            method = command.get("method") if isinstance(command, dict) else None

            def replied(result: Any) -> None:
                replies.append({"error": result.to_wire()} if isinstance(result, ApiError) else {"result": result})
                step(index + 1)

            if method == "batch":
                replied(bad_request("a batch cannot hold a batch"))
            elif not isinstance(method, str):
                replied(bad_request("each command needs a 'method' string"))
            else:
                self.call(method, command.get("params", {}), replied)

        step(0)


def check_api_key(key: Any) -> None:
    """Raises ValueError unless key is a string of ``MIN_KEY_LENGTH`` characters or more.

    Args:
        key: the configured API key.
    """
    if not isinstance(key, str) or len(key) < MIN_KEY_LENGTH or key != key.strip():
        raise ValueError(f"api_key must be a string of at least {MIN_KEY_LENGTH} characters, "
                         "without surrounding spaces")


class _Answer:
    """One HTTP response, ended once: at once or from a later loop callback, never after the
    client left (``on_aborted``)."""

    __slots__ = ("res", "aborted", "finished", "counts", "method")

    def __init__(self, res: Any, counts: dict[tuple[str, int], int], method: str) -> None:
        self.res = res
        self.aborted = False
        self.finished = False
        self.counts = counts
        self.method = method

    def abort(self) -> None:
        self.aborted = True

    def send(self, result: Any, allow: Optional[str] = None) -> None:
        if self.finished:
            return
        self.finished = True
        if self.aborted:
            return
        if isinstance(result, ApiError):
            status, body = result.status, orjson.dumps({"error": result.to_wire()})
            if status != 500:  # a 500 was logged with its traceback
                logger.info("server API %s refused: %d %s: %s", self.method, status, result.code, result.message)
        else:
            status, body = 200, orjson.dumps({"result": result})
        counted = (self.method, status)
        self.counts[counted] = self.counts.get(counted, 0) + 1
        res = self.res

        def write() -> None:
            res.write_status(_STATUS[status]).write_header("Content-Type", "application/json")
            if allow is not None:
                res.write_header("Allow", allow)
            # An early refusal leaves the body unread: the connection closes after it.
            res.end(body, status in (401, 405, 404, 413))

        res.cork(write)
