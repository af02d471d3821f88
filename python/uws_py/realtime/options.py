"""The options of a RealtimeServer: the :class:`Options` value object with every default, and
their validation. ``RealtimeServer(...)`` builds one from its keywords; the parts it wires
take the options they need from it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

from ..app import MAX_LIFETIME_MINUTES, SSLOptions
from ..auth import JWTAuth
from ..batching import Batching
from ..behavior import subprotocol_list
from ..broker import Broker
from ..ratelimit import DEFAULT_RETRY_AFTER, RateLimit
from .history import DEFAULT_RECOVER_LIMIT
from .presence import DEFAULT_DIFF_INTERVAL, DEFAULT_PRESENCE_TTL, check_timing

# The default per-client limit (RateLimit's defaults: 100 messages per 60 s).
DEFAULT_RATE_LIMIT = RateLimit()

# Messages shorter than this leave uncompressed. The shared compressor starts every message
# from an empty window, so a short JSON reply (an ACK, a PONG) saves a few bytes at best
# while deflate's block header and sync flush cost CPU and ~10 bytes on the wire.
DEFAULT_COMPRESSION_THRESHOLD = 256
# Items of one BATCH; each also costs a rate-limit token.
DEFAULT_MAX_BATCH_ITEMS = 100
# Topics one connection may be subscribed to, and the longest topic name (in characters),
# as in Centrifugo: what one client can make the server hold stays bounded.
DEFAULT_MAX_SUBSCRIPTIONS = 128
DEFAULT_MAX_TOPIC_LENGTH = 255


@dataclass(frozen=True)
class Options:
    """Every RealtimeServer option with its default; see :class:`RealtimeServer`."""

    path: str = "/realtime"
    auth: Optional[JWTAuth] = None
    rate_limit: Optional[RateLimit] = DEFAULT_RATE_LIMIT
    batching: Optional[Batching] = None
    max_payload_length: int = 100 * 1024
    idle_timeout: int = 120
    max_backpressure: int = 1024 * 1024
    compression: bool = True
    allowed_origins: Optional[Sequence[str]] = None
    max_connections: Optional[int] = None
    max_connections_per_ip: Optional[int] = None
    ssl: Optional[SSLOptions] = None
    report_interval: Optional[float] = None
    health_path: str = "/health"
    metrics_path: str = "/metrics"
    access_log: bool = False
    broker: Optional[Broker] = None
    handler_metrics: bool = True
    history_recover_limit: int = DEFAULT_RECOVER_LIMIT
    dashboard_token: Optional[str] = None
    dashboard_path: str = "/dashboard"
    tracing: Any = None
    client_script: bool = True
    compression_threshold: int = DEFAULT_COMPRESSION_THRESHOLD
    max_batch_items: int = DEFAULT_MAX_BATCH_ITEMS
    max_subscriptions: int = DEFAULT_MAX_SUBSCRIPTIONS
    max_topic_length: int = DEFAULT_MAX_TOPIC_LENGTH
    trusted_proxies: Optional[Sequence[str]] = None
    presence_ttl: float = DEFAULT_PRESENCE_TTL
    presence_diff_interval: float = DEFAULT_DIFF_INTERVAL
    close_on_backpressure_limit: bool = True
    subprotocols: Optional[tuple[str, ...]] = None
    api_key: Optional[str] = None
    api_path: str = "/api"
    max_upgrades_per_second: Optional[int] = None
    retry_after: int = DEFAULT_RETRY_AFTER
    max_lifetime: int = 0


def subprotocol_tuple(subprotocols: Optional[Sequence[str]]) -> Optional[tuple[str, ...]]:
    """The ``subprotocols`` option as stored (a tuple, or None); a lone str is refused rather
    than split into letters (the route checks each entry is a token).

    Args:
        subprotocols: what the caller gave.
    """
    if subprotocols is None:
        return None
    return tuple(subprotocol_list(subprotocols if isinstance(subprotocols, (str, bytes)) else list(subprotocols)))


def validate(options: Options) -> None:
    """Raises ValueError naming the first integer option out of its range.

    Args:
        options: the options to check.
    """
    for name, least in (("history_recover_limit", 0), ("compression_threshold", 0), ("max_batch_items", 1),
                        ("max_subscriptions", 1), ("max_topic_length", 1), ("max_lifetime", 0)):
        value = getattr(options, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    if options.max_lifetime > MAX_LIFETIME_MINUTES:
        raise ValueError(f"max_lifetime must be at most {MAX_LIFETIME_MINUTES} minutes, got {options.max_lifetime!r}")
    check_timing(options.presence_ttl, options.presence_diff_interval)
    if options.api_key is not None:
        from .api import check_api_key

        check_api_key(options.api_key)
    if not options.api_path.startswith("/"):
        raise ValueError(f"api_path must start with '/', got {options.api_path!r}")
