"""Message -> handler -> reply: the realtime route's ``message`` handler, BATCH included.

:meth:`Dispatcher.on_message` is the hot path. A plain sync handler without schema is called
inline there and its dict reply is encoded and sent on the spot: no further Python call per
message. Everything else (built-ins, schemas, coroutines, errors) goes through
:meth:`Dispatcher.dispatch`. The server mounts :meth:`Dispatcher.native_handler` instead, which
does on_message's common case in C and calls back into these methods for the rest.
"""

from __future__ import annotations

import asyncio
import logging
import operator
import sys
import time
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

import orjson
from orjson import JSONDecodeError

from ..metrics import LATENCY_SAMPLE_MASK
from ..ratelimit import RateLimit, TokenBucket
from .protocol import (
    BINARY, INTERNAL, INVALID_MESSAGE, LIMIT_EXCEEDED, PAYLOAD_TOO_LARGE, RATE_LIMITED, TEXT, UNKNOWN_TYPE,
    ProtocolError, check_message, error, now_ms,
)
from .routing import Route, Router

if TYPE_CHECKING:
    from .._asyncio import CoroutineRunner
    from ..metrics import Metrics
    from .builtins import Builtin
    from .session import Client

logger = logging.getLogger("uws_py.realtime")

_dumps = orjson.dumps
_loads = orjson.loads
_perf_counter = time.perf_counter

# Returned by a built-in that already sent its own reply.
REPLIED = object()


class Dispatcher:
    """Routes each message of a connection and answers it.

    Args:
        router: the application's types.
        builtins: the built-in types' handlers (``Builtins.table()``); BATCH is added here.
        metrics: error, rate-limit and latency counters.
        runner: starts ``async def`` handlers.
        rate_limit: the per-client limit (for its close policy), or None.
        max_payload_length: larger messages get PAYLOAD_TOO_LARGE.
        compress: replies sent on the inline path are deflated when they pay (as Client.send).
        max_batch_items: the most messages one BATCH may hold (more: LIMIT_EXCEEDED).
    """

    def __init__(self, router: Router, builtins: dict[str, "Builtin"], metrics: "Metrics",
                 runner: "CoroutineRunner", rate_limit: Optional[RateLimit], max_payload_length: int,
                 compress: bool = False, max_batch_items: int = 100) -> None:
        self.compress = compress
        # The native handlers made by native_handler(): each keeps max_batch_items in C,
        # given the new value when it is set (the property below).
        self._natives: list[Any] = []
        self._max_batch_items = operator.index(max_batch_items)
        self.router = router
        self.routes = router.routes  # read directly on the hot path
        self.builtins = {**builtins, "BATCH": self.batch}
        self.metrics = metrics
        self.runner = runner
        self.rate_limit = rate_limit
        self.max_payload_length = max_payload_length
        self.binary_handler: Optional[Callable[["Client", bytes], Any]] = None

    @property
    def max_batch_items(self) -> int:
        """The most messages one BATCH may hold (more: LIMIT_EXCEEDED).

        Setting it takes effect from the next message, on the Python path and in every
        native handler this dispatcher made (which keep it as a C integer).
        """
        return self._max_batch_items

    @max_batch_items.setter
    def max_batch_items(self, value: int) -> None:
        value = operator.index(value)
        for native in self._natives:
            native.max_batch_items = value
        self._max_batch_items = value

    def on_message(self, ws: Any, data: Union[str, bytes], opcode: int) -> None:
        """The route's ``message`` handler.

        Args:
            ws: the WebSocket (its user data is the Client).
            data: the message (str for text, bytes for binary).
            opcode: 1 (text) or 2 (binary).
        """
        client: "Client" = ws.get_user_data()
        bucket = client.bucket
        if bucket is not None and not bucket.take():
            self.rate_limited(client, bucket)
            return
        self.handle_admitted(ws, client, data, opcode)

    def handle_admitted(self, ws: Any, client: "Client", data: Union[str, bytes], opcode: int) -> None:
        """A message the rate limit let through: everything :meth:`on_message` does after
        taking the token (the native handler comes here for every case but its common one).

        Args:
            ws: the WebSocket.
            client: its Client.
            data: the message (str for text, bytes for binary).
            opcode: 1 (text) or 2 (binary).
        """
        if len(data) > self.max_payload_length or (
            # Text arrives decoded: measure bytes only when characters could hide them.
            isinstance(data, str) and len(data) * 4 > self.max_payload_length
            and len(data.encode("utf-8", "surrogatepass")) > self.max_payload_length
        ):
            self.send_error(client, None, ProtocolError(PAYLOAD_TOO_LARGE, f"message over {self.max_payload_length} bytes"))
            return
        if opcode == BINARY:
            self.binary(client, data)  # type: ignore[arg-type]
            return
        try:
            message = _loads(data)
        except JSONDecodeError as exc:
            self.send_error(client, None, ProtocolError(INVALID_MESSAGE, f"not JSON: {exc}"))
            return
        if type(message) is not dict or type(message.get("type")) is not str or not message["type"]:
            try:
                check_message(message)  # the wire format's own checks, with the precise error
            except ProtocolError as exc:
                request_id = message.get("id") if type(message) is dict else None
                self.send_error(client, request_id, exc)
                return
        route = self.routes.get(message["type"])
        if route is not None and route.fast:
            # The common case inline: a plain function, no schema, its dict reply sent at once.
            calls = route.count_call()
            try:
                if calls & LATENCY_SAMPLE_MASK or route.histogram is None:
                    reply = route.handler(client, message)
                else:
                    # One call in LATENCY_SAMPLE_EVERY is timed: clocks for every message
                    # would cost more than the 5% monitoring may take.
                    started = _perf_counter()
                    reply = route.handler(client, message)
                    route.histogram.observe(_perf_counter() - started)
            except Exception:
                self.dispatch(client, message, None, failed_route=route)
                return
            if type(reply) is dict and client.batcher is None:
                request_id = message.get("id")
                if request_id is not None:
                    reply = {**reply, "id": request_id}
                try:
                    ws.send(_dumps(reply), TEXT, self.compress)
                except TypeError:
                    client.send(reply)  # Client.send answers INTERNAL for an unencodable reply
                return
            self.reply(client, message.get("id"), reply, None)
            return
        self.dispatch(client, message, None)

    def native_handler(self) -> Callable[[Any, Union[str, bytes], int], None]:
        """:meth:`on_message` with its common case in C: the native module's RealtimeDispatch.

        It takes the token, checks the size, decodes, calls a fast route's handler and sends
        its dict reply itself, answers PING, and does SUBSCRIBE, UNSUBSCRIBE and PUBLISH when
        nothing but the core is involved (no batcher, topic hook, topic claims, broker, relay,
        presence or history; a valid topic within the limits), alone or as items of a BATCH
        (whose other items go to :meth:`batch_item`). Every other case (refusals,
        errors, other built-ins, schemas, coroutines, batching) it hands to this dispatcher's
        methods, so the replies are the same (tests/unit/realtime/test_fast_path.py). Routes
        added later are seen: it reads the router's dict, and the PubSub's hooks per message.
        The Client, Route, TokenBucket and PubSub attributes it uses are found at their
        ``__slots__`` offsets once, here.
        """
        from .._core import RealtimeDispatch
        from .builtins import Builtins
        from .session import Client
        from .users import CONTROL_TOPIC, USER_TOPIC_PREFIX, is_reserved

        # A built-in is done in C only while it is the stock one (not one a test or hook replaced).
        stock = {"PING": Builtins.ping, "SUBSCRIBE": Builtins.subscribe, "UNSUBSCRIBE": Builtins.unsubscribe,
                 "PUBLISH": Builtins.publish, "BATCH": Dispatcher.batch}
        native = frozenset(kind for kind, method in stock.items()
                           if getattr(self.builtins.get(kind), "__func__", None) is method)
        # The PubSub the stock built-ins act on: the one whose hooks and limits the C path reads.
        pubsub = getattr(getattr(self.builtins.get("PUBLISH"), "__self__", None), "pubsub", None)
        if pubsub is None:
            native = native & {"PING", "BATCH"}
        handler = RealtimeDispatch(self, self.routes, _loads, _dumps, Client, Route, TokenBucket, time.monotonic,
                                   LATENCY_SAMPLE_MASK, self.max_payload_length, self.compress, native, pubsub,
                                   is_reserved, USER_TOPIC_PREFIX, CONTROL_TOPIC)
        self._natives.append(handler)
        return handler

    def rate_limited(self, client: "Client", bucket: TokenBucket, request_id: Any = None, tokens: int = 1) -> None:
        """A message over the rate limit: RATE_LIMITED with retryAfter, or 1008 for a client
        that keeps going.

        Args:
            client: the sender.
            bucket: its token bucket.
            request_id: the refused request's ``id`` (a BATCH's; a single message is refused
                before it is parsed, so without one).
            tokens: how many the refused request needed (a BATCH: one per item).
        """
        self.metrics.rate_limited += 1
        limit = self.rate_limit
        assert limit is not None
        if bucket.refused > limit.close_after * limit.messages:
            logger.warning("closing %s (%s): kept sending past its rate limit", client.id, client.remote_address)
            client.close(1008, "rate limit exceeded")
            return
        retry_ms = int(bucket.retry_after(tokens) * 1000) + 1
        text = "rate limit exceeded" if tokens == 1 else f"rate limit exceeded: this BATCH needs {tokens} tokens"
        self.send_error(client, request_id, ProtocolError(RATE_LIMITED, text, retryAfter=retry_ms))

    def binary(self, client: "Client", data: bytes) -> None:
        """A binary message: to the on_binary handler, else INVALID_MESSAGE.

        Args:
            client: the sender.
            data: the message.
        """
        handler = self.binary_handler
        if handler is None:
            self.send_error(client, None, ProtocolError(INVALID_MESSAGE, "binary messages are not accepted"))
            return
        try:
            result = handler(client, data)
            if asyncio.iscoroutine(result):
                self.runner.start(result)
        except Exception:
            logger.exception("exception in binary handler")
            self.send_error(client, None, ProtocolError(INTERNAL, "internal error"))

    def dispatch(self, client: "Client", message: dict[str, Any], out: Optional[list[Any]],
                 failed_route: Optional[Route] = None) -> None:
        """Handles one decoded message.

        Args:
            client: the sender.
            message: a dict with a string ``type``.
            out: the BATCH replies being collected, or None to send replies at once.
            failed_route: the inline path's handler raised; answer its exception, which is
                the one being handled now.
        """
        kind = message["type"]
        request_id = message.get("id")
        if failed_route is not None:
            exc = sys.exc_info()[1]
            if isinstance(exc, ProtocolError):
                self.send_error(client, request_id, exc, out)
            else:
                logger.exception("exception in handler for %r", kind)
                self.send_error(client, request_id, ProtocolError(INTERNAL, "internal error"), out)
            return
        try:
            builtin = self.builtins.get(kind)
            if builtin is not None:
                reply = builtin(client, message, out)
            else:
                route = self.router.get(kind)
                if route is None:
                    raise ProtocolError(UNKNOWN_TYPE, f"no handler for type {kind!r}")
                argument = message if route.schema is None else route.validate(message)
                if route.is_async:
                    self.runner.start(self.run_async(route, client, argument, request_id), name=route.kind)
                    return
                route.count_call()
                started = _perf_counter()
                reply = route.handler(client, argument)
                if route.histogram is not None:
                    route.histogram.observe(_perf_counter() - started)
        except ProtocolError as exc:
            self.send_error(client, request_id, exc, out)
            return
        except Exception:
            logger.exception("exception in handler for %r", kind)
            self.send_error(client, request_id, ProtocolError(INTERNAL, "internal error"), out)
            return
        self.reply(client, request_id, reply, out)

    async def run_async(self, route: Route, client: "Client", argument: Any, request_id: Any) -> None:
        """Awaits an ``async def`` handler and answers as :meth:`dispatch` would.

        Args:
            route: the handler's route.
            client: the sender.
            argument: the (validated) message.
            request_id: the request's ``id``.
        """
        route.count_call()
        started = _perf_counter()
        try:
            reply = await route.handler(client, argument)
        except ProtocolError as exc:
            self.send_error(client, request_id, exc)
            return
        except Exception:
            logger.exception("exception in handler for %r", route.kind)
            self.send_error(client, request_id, ProtocolError(INTERNAL, "internal error"))
            return
        finally:
            # The route's histogram exists only with handler_metrics on.
            if route.histogram is not None:
                route.histogram.observe(_perf_counter() - started)
        self.reply(client, request_id, reply, None)

    def reply(self, client: "Client", request_id: Any, reply: Any, out: Optional[list[Any]]) -> None:
        """Sends a handler's return value: None -> ACK (only for a request with an id), a
        dict as it is, anything else as RESULT; the request's id is attached.

        Args:
            client: the sender.
            request_id: the request's ``id``.
            reply: what the handler returned (:data:`REPLIED`: nothing more to send).
            out: the BATCH being collected, or None.
        """
        if reply is REPLIED:
            return
        if reply is None:
            if request_id is None:
                return
            reply = {"type": "ACK"}
        if not isinstance(reply, dict):
            reply = {"type": "RESULT", "data": reply}
        if request_id is not None:
            reply = {**reply, "id": request_id}
        if out is not None:
            out.append(reply)
        else:
            client.send(reply)

    def send_error(self, client: "Client", request_id: Any, exc: ProtocolError, out: Optional[list[Any]] = None) -> None:
        """Counts and sends (or collects) the ERROR for ``exc``.

        Args:
            client: the sender.
            request_id: the request's ``id``.
            exc: the refusal.
            out: the BATCH being collected, or None.
        """
        self.metrics.error(exc.code)
        reply = error(exc.code, exc.message, request_id, **exc.extra)
        if out is not None:
            out.append(reply)
        else:
            client.send(reply)

    def batch(self, client: "Client", message: dict[str, Any], out: Optional[list[Any]]) -> object:
        """BATCH ``messages``: each dispatched, the replies sent in one BATCH frame (or an
        ACK when there are none and the request has an id).

        Args:
            client: the sender.
            message: the request.
            out: not None when this BATCH sits inside another (refused).
        """
        if out is not None:
            raise ProtocolError(INVALID_MESSAGE, "a BATCH cannot contain a BATCH")
        messages = message.get("messages")
        if not isinstance(messages, list):
            raise ProtocolError(INVALID_MESSAGE, "field 'messages' must be a list")
        if len(messages) > self.max_batch_items:
            raise ProtocolError(LIMIT_EXCEEDED, f"a BATCH holds at most {self.max_batch_items} messages, "
                                f"this one {len(messages)}", limit="maxBatchItems", max=self.max_batch_items)
        bucket = client.bucket
        # Every item costs a token; the BATCH frame's own token (taken in on_message) paid
        # for the first one. All or nothing: a refused BATCH runs none of its items.
        if bucket is not None and len(messages) > 1 and not bucket.take(len(messages) - 1):
            self.rate_limited(client, bucket, message.get("id"), len(messages))
            return REPLIED
        # The BATCH's time is when it was taken up, before its items (the native path gives
        # it the time its PONGs have, the dispatch's).
        timestamp = now_ms()
        replies: list[Any] = []
        for item in messages:
            self.batch_item(client, item, replies)
        if replies:
            reply = {"type": "BATCH", "timestamp": timestamp, "messages": replies}
            if "id" in message:
                reply["id"] = message["id"]
            client.send(reply)
        elif "id" in message:
            client.send({"type": "ACK", "id": message["id"]})
        return REPLIED

    def batch_item(self, client: "Client", item: Any, replies: list[Any]) -> None:
        """One message of a BATCH, its replies collected in ``replies`` (the native handler
        calls this for every item it does not answer itself).

        Args:
            client: the sender.
            item: the batched message, as it was in the list.
            replies: the BATCH's replies so far.
        """
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            self.send_error(client, None, ProtocolError(INVALID_MESSAGE, "each batched message is an object with a type"), replies)
            return
        self.dispatch(client, item, replies)
