"""The ``uws-py`` command: ``serve``, ``check-config`` and ``--version``."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import json
import logging
import os
import signal
import socket
import sys
from typing import Any, Optional, Sequence

from . import __version__
from .config import SECRET_OPTIONS, ConfigError, ServeConfig, load, parse_history, parse_presence, parse_rate_limit
from .supervisor import EXIT_USAGE, Supervisor, worker_listening

logger = logging.getLogger("uws_py.cli")



class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log pipelines."""

    def format(self, record: logging.LogRecord) -> str:
        """``record`` as one JSON object (time, level, logger, message, pid, exception)."""
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        perf = getattr(record, "perf", None)
        if isinstance(perf, dict):
            entry["perf"] = perf
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(config: ServeConfig) -> None:
    """Sends every log record to stderr, as text or JSON lines (``config.log_format``),
    at ``config.log_level``.

    Args:
        config: the resolved configuration.
    """
    handler = logging.StreamHandler()
    if config.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.log_level.upper())


def _add_serve_options(parser: argparse.ArgumentParser) -> None:
    """Every ServeConfig field as --option; absent options stay absent (argparse.SUPPRESS),
    so the environment and the file can fill them."""
    for f in dataclasses.fields(ServeConfig):
        if f.name == "app":
            continue
        flag = "--" + f.name.replace("_", "-")
        env = "UWS_PY_" + f.name.upper()
        shown_default = "***" if f.name in SECRET_OPTIONS and f.default else f.default
        if f.default is dataclasses.MISSING:
            shown_default = "none"
        help_text = f"{f.metadata['help']} [env {env}; default {shown_default}]"
        if f.type in ("list[str]",):
            parser.add_argument(flag, dest=f.name, action="append", default=argparse.SUPPRESS, help=help_text)
        elif f.type in ("bool", bool):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
        elif f.type in ("int", int):
            parser.add_argument(flag, dest=f.name, type=int, default=argparse.SUPPRESS, help=help_text)
        elif f.type in ("float", float):
            parser.add_argument(flag, dest=f.name, type=float, default=argparse.SUPPRESS, help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, default=argparse.SUPPRESS, help=help_text)


def build_parser() -> argparse.ArgumentParser:
    """The ``uws-py`` argument parser (``serve``, ``check-config``, ``--version``)."""
    parser = argparse.ArgumentParser(
        prog="uws-py",
        description="A WebSocket server on a native core. Precedence of settings: "
        "command line > environment (UWS_PY_<NAME>) > --config FILE (TOML, [serve] table) > default.",
    )
    parser.add_argument("--version", action="version", version=f"uws-py {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="run a server (default: the built-in realtime hub at /realtime)",
        description="Runs MODULE:ATTR (a RealtimeServer, an App, or a factory returning one), or with no "
        "argument the built-in realtime hub: the realtime protocol at /realtime (SUBSCRIBE/PUBLISH "
        "between clients; JWT auth when --jwt-secret or --jwt-public-key is given), /health and /metrics. "
        "Precedence: command line > environment (UWS_PY_<NAME>) > --config FILE > default.",
    )
    serve.add_argument("app", nargs="?", default=argparse.SUPPRESS, help="MODULE:ATTR [env UWS_PY_APP]")
    serve.add_argument("--config", dest="config_file", default=None, help="TOML file with a [serve] table")
    _add_serve_options(serve)
    check = commands.add_parser(
        "check-config", help="validate a TOML file and print the effective configuration (file, then UWS_PY_* environment)"
    )
    check.add_argument("file")
    return parser


def resolve_config(args: argparse.Namespace, environ: Optional[dict[str, str]] = None) -> ServeConfig:
    """The configuration from command line, environment and file, in that precedence.

    Args:
        args: the parsed command line.
        environ: the environment (default: ``os.environ``).
    """
    given = {k: v for k, v in vars(args).items() if k not in ("command", "config_file", "file")}
    return load(getattr(args, "config_file", None), dict(os.environ if environ is None else environ), given)


def load_target(spec: str) -> Any:
    """Imports MODULE:ATTR; ConfigError with the import error when it fails.

    Args:
        spec: ``module.path:attribute.path``.
    """
    module_name, _, attribute = spec.partition(":")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}") from None
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError(f"module {module_name!r} has no attribute {attribute!r}") from None
    return target


# ServeConfig options that configure the realtime layer: the built-in hub takes them all, a
# RealtimeServer target those given (file, environment or command line), an App none.
REALTIME_OPTIONS = (
    "jwt_secret", "jwt_public_key", "jwt_algorithms", "rate_limit", "broker", "max_payload", "idle_timeout",
    "compression", "compression_threshold", "access_log", "history", "history_recover_limit", "max_batch_items",
    "max_subscriptions", "max_topic_length", "trusted_proxy", "dashboard_token", "dashboard_path", "report_interval",
    "presence", "presence_ttl", "presence_diff_interval", "close_on_backpressure_limit", "api_key", "api_path",
    "max_connections", "max_connections_per_ip", "max_upgrades_per_second", "retry_after",
    "max_lifetime", "broker_publish_timeout",
)
_SSL_OPTIONS = ("ssl_certfile", "ssl_keyfile", "ssl_keyfile_password")
# The --broker schemes --broker-publish-timeout applies to.
REDIS_BROKER_SCHEMES = ("redis://", "rediss://", "redis+cluster://", "rediss+cluster://")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def realtime_keywords(config: ServeConfig, names: Sequence[str]) -> dict[str, Any]:
    """The RealtimeServer keywords that the options ``names`` of ``config`` set.

    Args:
        config: the resolved configuration.
        names: ServeConfig option names (of REALTIME_OPTIONS; ``history`` and ``presence`` are not keywords).
    """
    from .auth import JWTAuth
    from .ratelimit import RateLimit

    keywords: dict[str, Any] = {}
    if "jwt_secret" in names or "jwt_public_key" in names:
        auth = None
        algorithms = [a.strip() for a in config.jwt_algorithms.split(",") if a.strip()]
        if config.jwt_secret:
            auth = JWTAuth(secret=config.jwt_secret, algorithms=algorithms or ["HS256"])
        elif config.jwt_public_key:
            with open(config.jwt_public_key, encoding="utf-8") as handle:
                auth = JWTAuth(public_key=handle.read(), algorithms=algorithms or ["RS256"])
        keywords["auth"] = auth
    elif "jwt_algorithms" in names:
        raise ConfigError("--jwt-algorithms needs --jwt-secret or --jwt-public-key")
    if "rate_limit" in names:
        limit = parse_rate_limit(config.rate_limit)
        keywords["rate_limit"] = RateLimit(messages=limit[0], per_seconds=limit[1]) if limit else None
    if "broker_publish_timeout" in config.given and not (config.broker or "").startswith(REDIS_BROKER_SCHEMES):
        # A NATS broker (or a target's own broker) would ignore it.
        raise ConfigError("--broker-publish-timeout goes with a redis://, rediss://, redis+cluster:// or "
                          "rediss+cluster:// --broker")
    if "broker" in names or "history_store" in names:
        broker = None
        if config.broker:
            from .broker import from_url

            redis = config.broker.startswith(REDIS_BROKER_SCHEMES)
            try:
                broker = from_url(config.broker, config.history_store,
                                  publish_timeout=config.broker_publish_timeout if redis else None)
            except (RuntimeError, ValueError) as exc:
                raise ConfigError(str(exc)) from None
        keywords["broker"] = broker
    renamed = {"max_payload": "max_payload_length", "trusted_proxy": "trusted_proxies"}
    for name in ("max_payload", "idle_timeout", "compression", "compression_threshold", "access_log",
                 "history_recover_limit", "max_batch_items", "max_subscriptions", "max_topic_length", "trusted_proxy",
                 "dashboard_token", "dashboard_path", "presence_ttl", "presence_diff_interval",
                 "close_on_backpressure_limit", "api_key", "api_path", "retry_after", "max_lifetime"):
        if name in names:
            keywords[renamed.get(name, name)] = getattr(config, name)
    for name in ("max_connections", "max_connections_per_ip", "max_upgrades_per_second"):
        if name in names:
            keywords[name] = getattr(config, name) or None  # 0: no limit
    if "report_interval" in names:
        keywords["report_interval"] = config.report_interval or None
    return keywords


def build_server(config: ServeConfig) -> Any:
    """The RealtimeServer or App this configuration runs: the built-in hub, or the target
    with the realtime options that were given applied to it (ConfigError naming those that
    cannot apply to an App).

    Args:
        config: the resolved configuration.
    """
    from .app import App, SSLOptions
    from .realtime.server import RealtimeServer

    if config.app:
        target = load_target(config.app)
        if not isinstance(target, (RealtimeServer, App)) and callable(target):
            target = target()
        if not isinstance(target, (RealtimeServer, App)):
            raise ConfigError(f"{config.app} is neither a RealtimeServer nor an App (nor a factory of one)")
        if set(_SSL_OPTIONS) & config.given:
            raise ConfigError("--ssl-* options apply to the built-in hub; give SSLOptions to your own server")
        given = [name for name in REALTIME_OPTIONS if name in config.given]
        if isinstance(target, App):
            if given:
                raise ConfigError(f"{', '.join(_flag(name) for name in given)} cannot apply to {config.app}, an App "
                                  "(they configure the realtime layer): give them to a RealtimeServer or leave them out")
            return target
        try:
            if given:
                target.configure(**realtime_keywords(config, given))
            if "history" in given:
                for spec in config.history:
                    target.history(*parse_history(spec))
            if "presence" in given:
                for spec in config.presence:
                    target.enable_presence(*parse_presence(spec))
        except (OSError, ValueError, RuntimeError) as exc:
            raise ConfigError(f"{config.app}: {exc}") from None
        return target
    ssl = None
    if config.ssl_certfile and config.ssl_keyfile:
        ssl = SSLOptions(config.ssl_certfile, config.ssl_keyfile, config.ssl_keyfile_password)
    try:
        server = RealtimeServer(ssl=ssl, **realtime_keywords(config, REALTIME_OPTIONS))
        for spec in config.history:
            server.history(*parse_history(spec))
        for spec in config.presence:
            server.enable_presence(*parse_presence(spec))
        return server
    except (OSError, ValueError) as exc:
        raise ConfigError(str(exc)) from None


def check_port(host: str, port: int) -> int:
    """Binds without SO_REUSEPORT to learn whether anyone holds the port; returns the port
    (a free one for 0). ConfigError when it is taken.

    Args:
        host: the address.
        port: the port, 0 for any.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        return probe.getsockname()[1]
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    finally:
        probe.close()


def _say(line: str) -> None:
    """One whole line on stdout in one write: workers share the terminal."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _listen_unix(app: Any, path: str, backlog: int = 512) -> None:
    """``app.listen_unix(path)``; ConfigError naming the path when it cannot.

    Args:
        app: the App or RealtimeServer.
        path: the socket's path.
        backlog: the listen backlog.
    """
    try:
        app.listen_unix(path, backlog=backlog)
    except OSError as exc:
        raise ConfigError(f"--uds {path}: {exc.strerror or exc}") from None


def somaxconn() -> Optional[int]:
    """The kernel's cap on a listen backlog (net.core.somaxconn), or None where it cannot be read."""
    try:
        with open("/proc/sys/net/core/somaxconn", encoding="ascii") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def check_backlog(backlog: int) -> None:
    """Warns when ``--backlog`` is more than the kernel gives (it is capped silently).

    Args:
        backlog: the backlog asked for.
    """
    cap = somaxconn()
    if cap is not None and backlog > cap:
        logger.warning("--backlog %d is capped by the kernel at net.core.somaxconn = %d", backlog, cap)


def run_worker(config: ServeConfig) -> int:
    """One serving process: builds the server, listens, runs until SIGTERM/SIGINT.

    Args:
        config: the resolved configuration.

    Returns the exit status.
    """
    from .realtime.server import RealtimeServer

    server = build_server(config)
    check_backlog(config.backlog)
    scheme = "wss" if config.ssl_certfile else "ws"
    if config.workers > 1 and config.app and getattr(server, "broker", None) is None:
        logger.warning("%d workers and %s has no broker: pub/sub reaches only subscribers of the same worker",
                       config.workers, config.app)
    if isinstance(server, RealtimeServer):
        if config.uds is not None:
            _listen_unix(server, config.uds, config.backlog)
            logger.info("uws-py %s serving %s on unix:%s (pid %d)", __version__, server.path, config.uds, os.getpid())
            _say(f"uws-py {__version__}: listening on unix:{config.uds} ({scheme}, path {server.path})")
        else:
            server.listen(port=config.port, host=config.host, backlog=config.backlog)
            logger.info("uws-py %s serving %s://%s:%d%s (pid %d)", __version__, scheme, config.host, server.port, server.path, os.getpid())
            # From the loop's first iteration: connections are steered here once they are served.
            server.app.defer(functools.partial(worker_listening, server.port))
            _say(f"uws-py {__version__}: listening on {scheme}://{config.host}:{server.port}{server.path}")
        server.run_forever()
    else:
        if config.uds is not None:
            _listen_unix(server, config.uds, config.backlog)
            logger.info("uws-py %s serving an App on unix:%s (pid %d)", __version__, config.uds, os.getpid())
            _say(f"uws-py {__version__}: listening on unix:{config.uds}")
        else:
            server.listen(config.port, config.host, backlog=config.backlog)
            logger.info("uws-py %s serving an App on %s:%d (pid %d)", __version__, config.host, server.port, os.getpid())
            server.defer(functools.partial(worker_listening, server.port))
            _say(f"uws-py {__version__}: listening on {config.host}:{server.port}")
        previous = {s: signal.signal(s, lambda *_: server.close()) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            server.run()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
    return 0


def serve(config: ServeConfig) -> int:
    """Runs ``config``: one worker in this process, or a Supervisor of ``config.workers``.

    Args:
        config: the resolved configuration.

    Returns the exit status.
    """
    configure_logging(config)
    logger.debug("configuration: %s", config.redacted())
    if config.uds is None:
        config.port = check_port(config.host, config.port)
    if config.workers > 1:
        # A target's own broker is known only in the workers (importing it here, before the
        # fork, would share its event loop): they warn for it.
        if not config.broker and not config.app:
            logger.warning("%d workers without --broker: pub/sub reaches only subscribers of the same worker", config.workers)
        return Supervisor(config, run_worker).run()
    return run_worker(config)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``uws-py`` console script.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "check-config":
            config = load(args.file, dict(os.environ), {})
            print(json.dumps(config.redacted(), indent=2))
            return 0
        config = resolve_config(args)
        return serve(config)
    except ConfigError as exc:
        print(f"uws-py: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
