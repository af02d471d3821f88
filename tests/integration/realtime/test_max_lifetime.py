"""RealtimeServer(max_lifetime=...): the App.ws option of the same name, in whole minutes,
reaches the realtime route; bad values are refused when the server is made."""

from __future__ import annotations

from typing import Any

import pytest

from uws_py import RealtimeServer


def mounted_behavior(server: RealtimeServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The behavior the server registers its realtime route with."""
    routes: dict[str, dict[str, Any]] = {}
    original = server.app.ws

    def record(pattern: str, behavior: dict[str, Any]) -> Any:
        routes[pattern] = behavior
        return original(pattern, behavior)

    monkeypatch.setattr(server.app, "ws", record)
    server._mount()
    return routes[server.path]


def test_max_lifetime_reaches_the_realtime_route(monkeypatch: pytest.MonkeyPatch) -> None:
    server = RealtimeServer(rate_limit=None, max_lifetime=30)
    assert server.options.max_lifetime == 30
    assert mounted_behavior(server, monkeypatch)["max_lifetime"] == 30


def test_max_lifetime_defaults_to_off(monkeypatch: pytest.MonkeyPatch) -> None:
    server = RealtimeServer(rate_limit=None)
    assert mounted_behavior(server, monkeypatch)["max_lifetime"] == 0


@pytest.mark.parametrize("value", [-1, 1.5, True, "5", 1_000_001])
def test_max_lifetime_refuses_bad_values(value: Any) -> None:
    with pytest.raises(ValueError, match="max_lifetime"):
        RealtimeServer(rate_limit=None, max_lifetime=value)
