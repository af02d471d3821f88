"""Hides the credentials in broker URLs before they reach a log line or a client.

A broker URL may carry a password (``redis://user:secret@host``, ``nats://token@host``,
``redis://host/0?password=secret``). Error messages name the storage they failed to reach, and
those messages are sent to clients (ERROR ``UNAVAILABLE``, the server API's 503) and logged, so
every such message goes through :func:`redact` first.
"""

from __future__ import annotations

import logging
import re

# scheme://userinfo@ : up to the last "@" before a "/", whitespace or quote (an unencoded "@" in
# a password must not leave its tail shown).
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/\s'\"]+)@")
# A password (or token) given as a query parameter, as redis-py and nats accept.
_QUERY_SECRET = re.compile(r"(?P<key>[?&](?:password|pass|token|auth)=)[^&#\s'\"]*", re.IGNORECASE)

MASK = "***"


def _mask_userinfo(match: re.Match[str]) -> str:
    user, sep, _secret = match["userinfo"].partition(":")
    # "user:secret@" keeps the user name; a lone "token@" is all secret (NATS tokens).
    shown = f"{user}:{MASK}" if sep else MASK
    return f"{match['scheme']}{shown}@"


def redact(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``.

    Args:
        text: a URL, or a message that may contain URLs (several, as a cluster or NATS server
            list has).

    Returns:
        The same text, with ``user:secret@`` as ``user:***@``, ``token@`` as ``***@`` and
        ``password=secret`` (query parameter) as ``password=***``.
    """
    return _QUERY_SECRET.sub(lambda m: m["key"] + MASK, _USERINFO.sub(_mask_userinfo, text))


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the credentials in a record's message (a broker client's
    exception text may quote the URL it was given)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Replaces the record's message by its redacted text; keeps every record."""
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def redacting_logger(name: str) -> logging.Logger:
    """The named logger, with a :class:`RedactingFilter` on it (added once).

    Args:
        name: the logger's name (``uws_py.broker``, ``uws_py.realtime``).
    """
    logger = logging.getLogger(name)
    if not any(isinstance(existing, RedactingFilter) for existing in logger.filters):
        logger.addFilter(RedactingFilter())
    return logger
