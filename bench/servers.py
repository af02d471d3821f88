"""The servers the runner measures: how to start each one, and whether it is installed."""

from __future__ import annotations

import os
import shutil
import sys
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
SERVERS_DIR = BENCH / "servers"
BASELINES = BENCH / ".baselines"
BASELINE_PYTHON = BASELINES / "venv" / "bin" / "python"
NODE_MODULES = BASELINES / "node" / "node_modules"
UWSJS_SHIM = BASELINES / "uwsjs-glibc236"
# uws-py runs on the interpreter that runs this script (the project's .venv).
PROJECT_PYTHON = Path(sys.executable)

# Exit status with which a server says it lacks a feature (e.g. permessage-deflate).
UNAVAILABLE_EXIT = 3

# The raw-App row of the realtime scenarios; measured whenever "uws-py" is.
APP_COMPANION = "uws-py-app"


@dataclass
class Server:
    name: str
    label: str  # library and version, as shown in the results
    echo: list[str]
    pubsub: list[str]
    env: dict[str, str] = field(default_factory=dict)
    missing: str = ""  # why it cannot run here, or "" if it can
    # Scenarios 8 and 9: the full realtime stack where the library has one (uws-py); the
    # others answer the same requests with their raw echo server.
    realtime: list[str] = field(default_factory=list)
    # Scenario 10: a server speaking the realtime fan-out protocol (SUBSCRIBE, PUBLISH ->
    # MESSAGE); a server without one is "not available" there.
    realtime_fanout: list[str] = field(default_factory=list)
    # The scenario kinds it is measured in; empty: all of them.
    kinds: frozenset[str] = frozenset()

    def command(self, kind: str, port: int, deflate: bool = False) -> list[str]:
        """The argv of the echo, pub/sub, realtime or realtime fan-out server on ``port``."""
        if kind == "realtime":
            base = self.realtime or self.echo
        elif kind == "realtime_fanout":
            base = self.realtime_fanout
        else:
            base = self.echo if kind == "echo" else self.pubsub
        return [*base, str(port), *(["--deflate"] if deflate else [])]

    def runs(self, kind: str) -> bool:
        """Whether it is measured in scenarios of ``kind``."""
        return not self.kinds or kind in self.kinds

    @property
    def speaks_realtime(self) -> bool:
        """Whether its realtime-scenario server is a RealtimeServer (token in the query, a
        CONNECTED greeting first, PING answered with PONG) rather than a raw echo."""
        return bool(self.realtime)


def _python_server(name: str, label: str, python: Path, script: str, missing: str) -> Server:
    return Server(
        name,
        label,
        echo=[str(python), str(SERVERS_DIR / f"{script}_echo.py")],
        pubsub=[str(python), str(SERVERS_DIR / f"{script}_pubsub.py")],
        missing=missing,
    )


def _node_server(name: str, label: str, script: str, env: dict[str, str], missing: str) -> Server:
    node = shutil.which("node") or "node"
    return Server(
        name,
        label,
        echo=[node, str(SERVERS_DIR / f"{script}_echo.js")],
        pubsub=[node, str(SERVERS_DIR / f"{script}_pubsub.js")],
        env=env,
        missing=missing if shutil.which("node") else "node not found",
    )


def _node_package_version(package: str) -> str:
    manifest = NODE_MODULES / package / "package.json"
    if not manifest.exists():
        return ""
    import json

    return json.loads(manifest.read_text())["version"]


def all_servers(versions: dict[str, str]) -> list[Server]:
    """Every known server; ``versions`` maps Python distribution names of the baselines venv to versions."""
    baseline_missing = "" if BASELINE_PYTHON.exists() else "bench/.baselines/venv missing: run bench/install_baselines.sh"

    def py(dist: str) -> tuple[str, str]:
        if baseline_missing:
            return dist, baseline_missing
        version = versions.get(dist, "")
        return f"{dist} {version}", "" if version else f"{dist} not installed in bench/.baselines/venv"

    uws_version = versions.get("uws-py", "?")
    servers = [
        dataclasses.replace(
            _python_server("uws-py", f"uws-py {uws_version}", PROJECT_PYTHON, "uwspy", ""),
            realtime=[str(PROJECT_PYTHON), str(SERVERS_DIR / "uwspy_realtime.py")],
            realtime_fanout=[str(PROJECT_PYTHON), str(SERVERS_DIR / "uwspy_realtime_pubsub.py")],
        ),
        # uws-py's raw App beside its RealtimeServer in the realtime scenarios (in the others
        # it would be the "uws-py" row again): the raw echo, and app.publish fan-out.
        dataclasses.replace(
            _python_server(APP_COMPANION, f"uws-py {uws_version} raw App", PROJECT_PYTHON, "uwspy", ""),
            realtime_fanout=[str(PROJECT_PYTHON), str(SERVERS_DIR / "uwspy_app_fanout.py")],
            kinds=frozenset({"realtime", "realtime_fanout"}),
        ),
    ]
    newest = _node_package_version("@btc-vision/uwebsockets.js")
    shim_ready = (UWSJS_SHIM / "uws.node").exists() and (UWSJS_SHIM / "libisoc23.so").exists()
    servers.append(
        _node_server(
            "uWS.js",
            f"uWebSockets.js {newest} (@btc-vision, glibc shim)",
            "uwsjs",
            {"UWSJS_MODULE": str(UWSJS_SHIM / "uws.node"), "LD_PRELOAD": str(UWSJS_SHIM / "libisoc23.so")},
            "" if newest and shim_ready else "@btc-vision/uwebsockets.js or its glibc shim not installed",
        )
    )
    old = _node_package_version("@trufflesuite/uws-js-unofficial")
    servers.append(
        _node_server(
            "uWS.js-20.30",
            f"uWebSockets.js {old} (@trufflesuite)",
            "uwsjs",
            {"UWSJS_MODULE": "@trufflesuite/uws-js-unofficial"},
            "" if old else "@trufflesuite/uws-js-unofficial not installed",
        )
    )
    ws_version = _node_package_version("ws")
    servers.append(_node_server("ws", f"ws {ws_version}", "ws", {}, "" if ws_version else "ws not installed"))
    for name, script in (("websockets", "websockets"), ("socketify", "socketify"), ("picows", "picows"), ("aiohttp", "aiohttp")):
        label, missing = py(name)
        if name == "picows" and not missing:
            label += f" + uvloop {versions.get('uvloop', '?')}"
        servers.append(_python_server(name, label, BASELINE_PYTHON, script, missing))
    return servers


# Measured unless --only names others: the 20.30 build only stands in when the shimmed newest
# uWebSockets.js cannot load.
DEFAULT_EXCLUDED = {"uWS.js-20.30"}


def server_env(server: Server) -> dict[str, str]:
    env = dict(os.environ)
    env.update(server.env)
    env["PYTHONUNBUFFERED"] = "1"
    return env
