"""uws_py.routing: Router and Route (type -> handler, validation by a callable or a msgspec Struct)."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from uws_py.protocol import INVALID_MESSAGE, ProtocolError
from uws_py.routing import Route, Router

import msgspec  # in the [test] extra: routing validates with msgspec Structs too

BUILTINS = frozenset({"SUBSCRIBE", "UNSUBSCRIBE", "PUBLISH", "BATCH", "PING", "AUTH"})


def handler(client: Any, message: Any) -> Any:
    return message


async def async_handler(client: Any, message: Any) -> Any:
    return message


def invalid(route: Route, message: dict) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        route.validate(message)
    assert caught.value.code == INVALID_MESSAGE
    return caught.value


def test_add_and_get() -> None:
    router = Router()
    route = router.add("chat", handler)
    assert router.get("chat") is route
    assert (route.kind, route.handler, route.schema) == ("chat", handler, None)
    assert router.get("other") is None


def test_types_are_sorted() -> None:
    router = Router()
    for kind in ("zeta", "alpha", "mid"):
        router.add(kind, handler)
    assert router.types() == ["alpha", "mid", "zeta"]


def test_types_are_case_sensitive() -> None:
    router = Router()
    router.add("chat", handler)
    router.add("CHAT", handler)
    assert router.get("Chat") is None


def test_duplicate_type_refused() -> None:
    router = Router()
    first = router.add("chat", handler)
    with pytest.raises(ValueError, match="already registered"):
        router.add("chat", async_handler)
    assert router.get("chat") is first


@pytest.mark.parametrize("kind", sorted(BUILTINS))
def test_reserved_types_refused(kind: str) -> None:
    router = Router(reserved=BUILTINS)
    with pytest.raises(ValueError, match="built-in"):
        router.add(kind, handler)
    assert router.get(kind) is None
    assert router.types() == []


@pytest.mark.parametrize("kind", ["", None, 5, b"chat"])
def test_type_must_be_a_non_empty_string(kind: Any) -> None:
    with pytest.raises(ValueError):
        Router().add(kind, handler)


def test_without_schema_the_message_passes_unchanged() -> None:
    message = {"type": "chat", "x": 1}
    assert Router().add("chat", handler).validate(message) is message


def require_text(message: dict) -> None:
    text = message.get("text")
    if not isinstance(text, str):
        raise ValueError("field 'text' must be a string")


def test_callable_schema_accepts() -> None:
    route = Router().add("chat", handler, schema=require_text)
    message = {"type": "chat", "text": "hi"}
    assert route.validate(message) is message


def test_callable_schema_value_error_names_the_field() -> None:
    route = Router().add("chat", handler, schema=require_text)
    assert invalid(route, {"type": "chat", "text": 3}).message == "field 'text' must be a string"


def test_callable_schema_result_replaces_the_message() -> None:
    route = Router().add("chat", handler, schema=lambda message: {"text": message["text"].upper()})
    assert route.validate({"type": "chat", "text": "hi"}) == {"text": "HI"}


def test_callable_schema_key_and_type_errors_become_invalid_message() -> None:
    route = Router().add("chat", handler, schema=lambda message: message["text"] + 1)
    assert "text" in invalid(route, {"type": "chat"}).message
    assert invalid(route, {"type": "chat", "text": "a"}).message


def test_callable_schema_empty_error_message_falls_back_to_exception_name() -> None:
    def refuse(message: dict) -> None:
        raise ValueError()

    assert invalid(Router().add("chat", handler, schema=refuse), {"type": "chat"}).message == "ValueError"


def test_callable_schema_other_exceptions_propagate() -> None:
    def broken(message: dict) -> None:
        raise RuntimeError("bug in the schema")

    route = Router().add("chat", handler, schema=broken)
    with pytest.raises(RuntimeError):
        route.validate({"type": "chat"})


@pytest.mark.parametrize("schema", [42, "text", object()])
def test_schema_must_be_a_struct_or_callable(schema: Any) -> None:
    with pytest.raises(TypeError, match="schema"):
        Router().add("chat", handler, schema=schema)


class Chat(msgspec.Struct):
    type: str
    text: str
    count: int = 1


def test_struct_schema_converts() -> None:
    route = Router().add("chat", handler, schema=Chat)
    converted = route.validate({"type": "chat", "text": "hi"})
    assert isinstance(converted, Chat)
    assert (converted.type, converted.text, converted.count) == ("chat", "hi", 1)


def test_struct_schema_ignores_unknown_fields() -> None:
    converted = Router().add("chat", handler, schema=Chat).validate({"type": "chat", "text": "hi", "id": 9})
    assert converted.text == "hi"


def test_struct_schema_wrong_type_names_the_field() -> None:
    route = Router().add("chat", handler, schema=Chat)
    assert "count" in invalid(route, {"type": "chat", "text": "hi", "count": "many"}).message


def test_struct_schema_missing_field_names_it() -> None:
    route = Router().add("chat", handler, schema=Chat)
    assert "text" in invalid(route, {"type": "chat"}).message


def test_sync_handler_is_not_async() -> None:
    assert Router().add("chat", handler).is_async is False


def test_async_handler_detected() -> None:
    assert Router().add("chat", async_handler).is_async is True


def test_async_handler_behind_partial_detected() -> None:
    async def with_prefix(prefix: str, client: Any, message: Any) -> Any:
        return prefix

    assert Router().add("chat", functools.partial(with_prefix, "p")).is_async is True


def test_async_method_detected() -> None:
    class Handlers:
        async def chat(self, client: Any, message: Any) -> Any:
            return None

        def ping(self, client: Any, message: Any) -> Any:
            return None

    handlers = Handlers()
    router = Router()
    assert router.add("chat", handlers.chat).is_async is True
    assert router.add("ping", handlers.ping).is_async is False


def test_lambda_returning_a_coroutine_is_not_detected() -> None:
    # Detection looks at the function, not at what it returns: wrap async work in `async def`.
    assert Router().add("chat", lambda client, message: async_handler(client, message)).is_async is False
