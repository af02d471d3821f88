"""Regression: a broker URL's password reached clients (ERROR UNAVAILABLE, the server API's
503 body) and log lines, because the storage errors quote the URL they failed to reach."""

from __future__ import annotations

import logging

import pytest

from uws_py.broker.redact import redact, redacting_logger
from uws_py.broker.redis_cluster import parse_cluster_url
from uws_py.realtime.api import _history_error, _unavailable
from uws_py.realtime.builtins import history_refusal
from uws_py.realtime.history import HistoryUnavailable
from uws_py.realtime.presence import PresenceUnavailable
from uws_py.realtime.presence_service import refusal_of

SECRET = "s3cr3t-pw"


@pytest.mark.parametrize("text, expected", [
    (f"redis://user:{SECRET}@10.0.0.1:6379/0", "redis://user:***@10.0.0.1:6379/0"),
    (f"redis://:{SECRET}@host", "redis://:***@host"),
    (f"rediss://default:{SECRET}@host:6380", "rediss://default:***@host:6380"),
    (f"nats://{SECRET}@a:4222,nats://u:{SECRET}@b:4222", "nats://***@a:4222,nats://u:***@b:4222"),
    (f"redis+cluster://u:{SECRET}@h1:7000,h2:7001", "redis+cluster://u:***@h1:7000,h2:7001"),
    (f"redis://host/0?password={SECRET}&db=1", "redis://host/0?password=***&db=1"),
    (f"redis://u:p@{SECRET}@host/0", "redis://u:***@host/0"),
    (f"unreachable at redis://u:{SECRET}@h:1: Error 111", "unreachable at redis://u:***@h:1: Error 111"),
])
def test_redact_hides_the_password(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize("text", ["redis://127.0.0.1:6379/0", "nats://a:4222,nats://b:4222", "no URL here: user@example"])
def test_redact_keeps_text_without_credentials(text: str) -> None:
    assert redact(text) == text


def test_history_unavailable_reply_does_not_carry_the_password() -> None:
    exc = HistoryUnavailable(f"history storage unreachable at redis://u:{SECRET}@h:1/0: refused")
    assert SECRET not in history_refusal(exc).message
    api_error = _history_error(exc)
    assert api_error.status == 503 and SECRET not in str(api_error.message)


def test_presence_unavailable_reply_does_not_carry_the_password() -> None:
    for exc in (PresenceUnavailable(f"presence storage unreachable at redis://u:{SECRET}@h:1: x"),
                ConnectionError(f"Error connecting to redis://u:{SECRET}@h:1")):
        refusal = refusal_of(exc)
        assert refusal.code == "UNAVAILABLE" and SECRET not in refusal.message
        assert SECRET not in str(_unavailable(exc).message)


def test_cluster_url_errors_do_not_carry_the_password() -> None:
    with pytest.raises(ValueError) as info:
        parse_cluster_url(f"redis+cluster://u:{SECRET}@h1:notaport")
    assert SECRET not in str(info.value) and "u:***@" in str(info.value)


def test_broker_log_lines_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    logger = redacting_logger("uws_py.broker")
    with caplog.at_level(logging.WARNING, logger="uws_py.broker"):
        logger.warning("lost the Redis connection: %s; reconnecting", f"Error at redis://u:{SECRET}@h:1")
    assert caplog.records and SECRET not in caplog.text and "u:***@h:1" in caplog.text
