"""The server's configuration: defaults < TOML file < environment (UWS_PY_<NAME>) < command line."""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field, fields
from typing import Any, Optional
from urllib.parse import urlsplit

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = None


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the option."""


SECRET_OPTIONS = frozenset({"jwt_secret", "ssl_keyfile_password", "dashboard_token", "api_key"})
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


@dataclass
class ServeConfig:
    """Every option of ``uws-py serve``; the help text comes from the metadata."""

    app: Optional[str] = field(default=None, metadata={"help": "MODULE:ATTR of a RealtimeServer, App or factory"})
    host: str = field(default="127.0.0.1", metadata={"help": "address to bind"})
    port: int = field(default=8080, metadata={"help": "port to bind (0 picks one)"})
    uds: Optional[str] = field(default=None, metadata={
        "help": "listen on this unix domain socket path instead of host:port (removed on exit)"})
    workers: int = field(default=1, metadata={"help": "worker processes sharing the port (SO_REUSEPORT)"})
    backlog: int = field(default=512, metadata={
        "help": "each worker's queue of connections not yet accepted (the kernel caps it at net.core.somaxconn)"})
    ssl_certfile: Optional[str] = field(default=None, metadata={"help": "TLS certificate chain (PEM)"})
    ssl_keyfile: Optional[str] = field(default=None, metadata={"help": "TLS private key (PEM)"})
    ssl_keyfile_password: Optional[str] = field(default=None, metadata={"help": "passphrase of the TLS key"})
    jwt_secret: Optional[str] = field(default=None, metadata={"help": "HMAC secret: require JWTs (HS256)"})
    jwt_public_key: Optional[str] = field(default=None, metadata={"help": "PEM file of the JWT public key"})
    jwt_algorithms: str = field(default="", metadata={"help": "comma-separated (default HS256 or RS256)"})
    rate_limit: Optional[str] = field(default="100/60s", metadata={"help": "messages per client, e.g. 100/60s; 'off'"})
    max_payload: int = field(default=100 * 1024, metadata={"help": "largest message in bytes"})
    idle_timeout: int = field(default=120, metadata={"help": "seconds before an idle connection closes"})
    compression: bool = field(default=True, metadata={"help": "permessage-deflate"})
    close_on_backpressure_limit: bool = field(default=True, metadata={
        "help": "close a client that falls 1 MiB behind with 1008 instead of dropping its messages"})
    broker: Optional[str] = field(default=None, metadata={"help": "redis://host:port/db, redis+cluster://host:port,host:port or nats://host:port, for pub/sub across workers"})
    history_store: Optional[str] = field(default=None, metadata={"help": "with a nats:// --broker: the redis:// or redis+cluster:// URL keeping history topics and presence"})
    broker_publish_timeout: float = field(default=5.0, metadata={
        "help": "with a redis:// or redis+cluster:// --broker: seconds to wait for Redis to answer one publish; "
                "one not answered is reported failed and not sent again"})
    history: list[str] = field(default_factory=list, metadata={
        "help": "PATTERN[:SIZE[:TTL]] topics keeping a history, e.g. 'chat.*:100:300' (repeatable; "
                "env: comma-separated; file: [[history]] pattern/size/ttl)"})
    history_recover_limit: int = field(default=1000, metadata={
        "help": "most publications one recovery returns (and the HISTORY limit cap)"})
    compression_threshold: int = field(default=256, metadata={
        "help": "with --compression, messages of at least this many bytes leave deflated"})
    max_batch_items: int = field(default=100, metadata={"help": "most messages in one BATCH (each costs a rate-limit token)"})
    max_subscriptions: int = field(default=128, metadata={"help": "most topics one connection may subscribe to"})
    max_topic_length: int = field(default=255, metadata={"help": "longest topic name, in characters"})
    max_lifetime: int = field(default=0, metadata={
        "help": "whole minutes a connection may stay open, then closed with 1001 (0: no limit)"})
    trusted_proxy: list[str] = field(default_factory=list, metadata={
        "help": "address or CIDR of a reverse proxy whose X-Forwarded-For/Forwarded header names the client "
                "(repeatable; env: comma-separated)"})
    presence: list[str] = field(default_factory=list, metadata={
        "help": "PATTERN[:join_leave] topics tracking presence, e.g. 'chat.*:join_leave' (repeatable; "
                "env and file: comma-separated or a list)"})
    presence_ttl: float = field(default=30.0, metadata={
        "help": "seconds a presence entry lives in Redis without a refresh (refreshed every ttl/3)"})
    presence_diff_interval: float = field(default=1.0, metadata={
        "help": "least seconds between two PRESENCE_DIFFs of one topic"})
    log_level: str = field(default="info", metadata={"help": "debug, info, warning, error"})
    log_format: str = field(default="human", metadata={"help": "human or json"})
    access_log: bool = field(default=True, metadata={"help": "log every upgrade and HTTP request"})
    dashboard_token: Optional[str] = field(default=None, metadata={
        "help": "serve the live dashboard; its data needs 'Authorization: Bearer TOKEN' (16+ characters)"})
    report_interval: int = field(default=0, metadata={
        "help": "seconds between 'perf:' report lines in the log (0: none)"})
    dashboard_path: str = field(default="/dashboard", metadata={"help": "where the live dashboard is served"})
    api_key: Optional[str] = field(default=None, metadata={
        "help": "serve the server API (POST API_PATH/METHOD with 'Authorization: apikey KEY', 16+ characters)"})
    api_path: str = field(default="/api", metadata={"help": "where the server API is served"})
    max_connections: int = field(default=0, metadata={
        "help": "open connections each worker holds; beyond, upgrades get 503 with Retry-After (0: no limit)"})
    max_connections_per_ip: int = field(default=0, metadata={
        "help": "open connections one address holds on each worker; beyond, 429 with Retry-After (0: no limit)"})
    max_upgrades_per_second: int = field(default=0, metadata={
        "help": "upgrades each worker lets on per second (bursts of one second's worth); beyond, 503 with "
                "Retry-After (0: no limit)"})
    retry_after: int = field(default=5, metadata={
        "help": "Retry-After seconds of a 503/429 for a full worker or address (spread up to twice that)"})

    # The options set by a layer (file, environment, command line) rather than left at their
    # default: what `serve MODULE:ATTR` applies to the target (set by load()).
    given = frozenset()  # type: frozenset[str]  (not annotated: not a field, not an option)

    def validate(self) -> "ServeConfig":
        if not (0 <= self.port <= 65535):
            raise ConfigError(f"--port must be 0..65535, not {self.port}")
        if self.workers < 1:
            raise ConfigError(f"--workers must be at least 1, not {self.workers}")
        if not (1 <= self.backlog <= 65535):
            raise ConfigError(f"--backlog must be 1..65535, not {self.backlog}")
        if self.uds is not None:
            # sun_path holds 108 bytes with the final NUL.
            if not self.uds or len(os.fsencode(self.uds)) > 107:
                raise ConfigError(f"--uds must be a path of 1 to 107 bytes, not {self.uds!r}")
            if self.workers > 1:
                raise ConfigError("--uds serves one worker: a unix socket cannot be shared by --workers processes")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"--log-level must be one of {', '.join(LOG_LEVELS)}, not {self.log_level!r}")
        if self.log_format not in ("human", "json"):
            raise ConfigError(f"--log-format must be human or json, not {self.log_format!r}")
        if self.max_payload <= 0 or self.idle_timeout < 0:
            raise ConfigError("--max-payload must be positive and --idle-timeout not negative")
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            raise ConfigError("--ssl-certfile and --ssl-keyfile go together")
        for path_option in ("ssl_certfile", "ssl_keyfile", "jwt_public_key"):
            path = getattr(self, path_option)
            if path and not os.access(path, os.R_OK):
                raise ConfigError(f"--{path_option.replace('_', '-')}: cannot read {path}")
        if self.jwt_secret and self.jwt_public_key:
            raise ConfigError("give --jwt-secret or --jwt-public-key, not both")
        parse_rate_limit(self.rate_limit)
        if self.broker is not None:
            parse_broker_url(self.broker)
        if self.history_store is not None:
            if not (self.broker or "").startswith(("nats://", "tls://")):
                raise ConfigError("--history-store goes with a nats:// --broker (a Redis broker keeps history itself)")
            if not self.history_store.startswith(("redis://", "rediss://", "redis+cluster://", "rediss+cluster://")):
                raise ConfigError(f"--history-store must be a redis:// or redis+cluster:// URL, not {self.history_store!r}")
            parse_broker_url(self.history_store)
        for spec in self.history:
            parse_history(spec)
        if self.report_interval < 0:
            raise ConfigError(f"--report-interval must not be negative, not {self.report_interval}")
        if self.dashboard_token is not None and len(self.dashboard_token) < 16:
            raise ConfigError("--dashboard-token must be at least 16 characters")
        if not self.dashboard_path.startswith("/"):
            raise ConfigError(f"--dashboard-path must start with '/', not {self.dashboard_path!r}")
        if self.api_key is not None and (len(self.api_key) < 16 or self.api_key != self.api_key.strip()):
            raise ConfigError("--api-key must be at least 16 characters, without surrounding spaces")
        if not self.api_path.startswith("/"):
            raise ConfigError(f"--api-path must start with '/', not {self.api_path!r}")
        for name, least in (("compression_threshold", 0), ("max_batch_items", 1), ("max_subscriptions", 1),
                            ("max_topic_length", 1), ("max_connections", 0), ("max_connections_per_ip", 0),
                            ("max_upgrades_per_second", 0), ("retry_after", 1), ("max_lifetime", 0)):
            if getattr(self, name) < least:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least {least}, not {getattr(self, name)}")
        from .app import MAX_LIFETIME_MINUTES

        if self.max_lifetime > MAX_LIFETIME_MINUTES:
            raise ConfigError(f"--max-lifetime must be at most {MAX_LIFETIME_MINUTES} minutes, not {self.max_lifetime}")
        from .proxies import TrustedProxies

        try:
            TrustedProxies(self.trusted_proxy)
        except ValueError as exc:
            raise ConfigError(f"--trusted-proxy: {exc}".replace("trusted_proxies: ", "")) from None
        for spec in self.presence:
            parse_presence(spec)
        if not self.broker_publish_timeout > 0:
            raise ConfigError(f"--broker-publish-timeout must be > 0 seconds, not {self.broker_publish_timeout}")
        if not (self.presence_ttl > 0 and self.presence_diff_interval > 0):
            raise ConfigError("--presence-ttl and --presence-diff-interval must be > 0")
        if self.history_recover_limit < 0:
            raise ConfigError(f"--history-recover-limit must not be negative, not {self.history_recover_limit}")
        if self.app is not None and not re.fullmatch(r"[\w.]+:[\w.]+", self.app):
            raise ConfigError(f"the app must be MODULE:ATTR, not {self.app!r}")
        return self

    def redacted(self) -> dict[str, Any]:
        """The effective configuration with secrets masked, for logs and check-config."""
        shown = {}
        for f in fields(self):
            value = getattr(self, f.name)
            shown[f.name] = "***" if f.name in SECRET_OPTIONS and value else value
        return shown


def parse_rate_limit(text: Optional[str]) -> Optional[tuple[int, float]]:
    """'100/60s' -> (100, 60.0); 'off' or None -> None."""
    if text is None or text.lower() in ("off", "none", "0"):
        return None
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", text)
    if not match:
        raise ConfigError(f"--rate-limit must look like 100/60s, not {text!r}")
    count, amount, unit = int(match.group(1)), float(match.group(2)), match.group(3) or "s"
    seconds = amount * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[unit]
    if count <= 0 or seconds <= 0:
        raise ConfigError(f"--rate-limit needs positive numbers, not {text!r}")
    return count, seconds


def parse_history(spec: str) -> tuple[str, int, float]:
    """'chat.*:100:300' -> ('chat.*', 100, 300.0); size and ttl may be left out (100, 300).

    Args:
        spec: PATTERN[:SIZE[:TTL]]; the pattern itself may hold ':' when size and ttl follow.
    """
    parts = spec.rsplit(":", 2)
    numbers: list[str] = []
    while len(parts) > 1 and re.fullmatch(r"\s*\d+(?:\.\d+)?\s*", parts[-1]):
        numbers.insert(0, parts.pop())
    pattern = ":".join(parts)
    if not pattern or len(numbers) > 2:
        raise ConfigError(f"--history must look like 'chat.*:100:300' (PATTERN[:SIZE[:TTL]]), not {spec!r}")
    try:
        size = int(numbers[0]) if numbers else 100
    except ValueError:
        raise ConfigError(f"--history size must be an integer, not {numbers[0]!r} in {spec!r}") from None
    ttl = float(numbers[1]) if len(numbers) > 1 else 300.0
    if size < 1 or ttl <= 0:
        raise ConfigError(f"--history needs size >= 1 and ttl > 0, not {spec!r}")
    return pattern, size, ttl


def parse_presence(spec: str) -> tuple[str, bool]:
    """'chat.*:join_leave' -> ('chat.*', True); 'chat.*' -> ('chat.*', False).

    Args:
        spec: PATTERN[:join_leave].
    """
    pattern, join_leave = spec, False
    if spec.endswith(":join_leave"):
        pattern, join_leave = spec[: -len(":join_leave")], True
    if not pattern:
        raise ConfigError(f"--presence must look like 'chat.*' or 'chat.*:join_leave', not {spec!r}")
    return pattern, join_leave


def _history_entry(entry: Any, source: str) -> str:
    """A file's ``[[history]]`` table as the PATTERN:SIZE:TTL spec the command line takes."""
    if not isinstance(entry, dict) or not isinstance(entry.get("pattern"), str):
        raise ConfigError(f"{source}: each [[history]] entry needs a string 'pattern'")
    unknown = set(entry) - {"pattern", "size", "ttl"}
    if unknown:
        raise ConfigError(f"{source}: unknown [[history]] key(s) {', '.join(sorted(unknown))}")
    size, ttl = entry.get("size", 100), entry.get("ttl", 300.0)
    if isinstance(size, bool) or not isinstance(size, int) or isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise ConfigError(f"{source}: [[history]] {entry['pattern']!r} needs an integer size and a numeric ttl")
    return f"{entry['pattern']}:{size}:{ttl}"


def parse_broker_url(url: str) -> Any:
    """Checks a broker URL; raises ConfigError naming what is wrong. ``redis://`` and
    ``rediss://`` give (host, port, db); ``redis+cluster://`` (and ``rediss+cluster://``)
    the list of startup nodes (docs/topics/scaling.md)."""
    parts = urlsplit(url)
    if parts.scheme in ("redis+cluster", "rediss+cluster"):
        from .broker.redis_cluster import parse_cluster_url

        try:
            return parse_cluster_url(url)["nodes"]
        except ValueError as exc:
            raise ConfigError(f"--broker: {exc}") from None
    if parts.scheme in ("nats", "tls"):
        servers = []
        for server in url.split(","):
            server_parts = urlsplit(server.strip())
            try:
                port = server_parts.port
            except ValueError:
                raise ConfigError(f"--broker has an invalid port: {url!r}") from None
            if server_parts.scheme not in ("nats", "tls") or not server_parts.hostname:
                raise ConfigError(f"--broker: each NATS server is nats://host:port: {url!r}")
            servers.append((server_parts.hostname, port or 4222))
        return servers
    if parts.scheme not in ("redis", "rediss"):
        raise ConfigError(f"--broker must be a redis://, rediss://, redis+cluster:// or nats:// URL, not {url!r}")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"--broker has an invalid port: {url!r}") from None
    if not parts.hostname:
        raise ConfigError(f"--broker has no host: {url!r}")
    path = parts.path.lstrip("/")
    if path and not path.isdigit():
        raise ConfigError(f"--broker database must be a number: {url!r}")
    return parts.hostname, port or 6379, int(path or 0)


def _coerce(name: str, kind: Any, value: Any, source: str) -> Any:
    if value is None:
        return None
    text_kind = str(kind)
    if text_kind in ("list[str]",):
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return list(value)
        raise ConfigError(f"{source}: {name} expects a list of strings, not {value!r}")
    try:
        if text_kind in ("int", "<class 'int'>"):
            return int(value)
        if text_kind in ("float", "<class 'float'>"):
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if text_kind in ("bool", "<class 'bool'>"):
            if isinstance(value, bool):
                return value
            lowered = str(value).strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
    except ValueError:
        raise ConfigError(f"{source}: {name} expects {text_kind.replace('<class ', '').strip('>')}, not {value!r}") from None
    return str(value) if not isinstance(value, str) else value


def load(file: Optional[str], environ: dict[str, str], command_line: dict[str, Any]) -> ServeConfig:
    """Merges the layers: command_line holds only the options given on the command line."""
    values: dict[str, Any] = {}
    known = {f.name: f for f in fields(ServeConfig)}
    if file:
        if tomllib is None:
            raise ConfigError("--config needs Python 3.11+ (tomllib)")
        try:
            with open(file, "rb") as handle:
                document = tomllib.load(handle)
        except OSError as exc:
            raise ConfigError(f"--config: cannot read {file}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"--config: {file} is not valid TOML: {exc}") from None
        section = document.get("serve", document)
        entries = document.get("history") if "serve" in document else None
        for key, value in section.items():
            name = key.replace("-", "_")
            if name == "history" and isinstance(value, list) and any(isinstance(v, dict) for v in value):
                entries = value
                continue
            if name not in known:
                raise ConfigError(f"--config: unknown option {key!r} in {file}")
            values[name] = _coerce(name, known[name].type, value, file)
        if entries is not None:
            if not isinstance(entries, list):
                raise ConfigError(f"--config: 'history' in {file} must be [[history]] tables")
            values["history"] = [_history_entry(entry, file) for entry in entries]
    for name, f in known.items():
        env_name = "UWS_PY_" + name.upper()
        if env_name in environ:
            values[name] = _coerce(name, f.type, environ[env_name], env_name)
    for name, value in command_line.items():
        values[name] = value
    config = ServeConfig(**values).validate()
    config.given = frozenset(name for name in values if name != "app")
    return config
