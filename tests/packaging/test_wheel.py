"""The repaired wheel installs and runs where there is no compiler: a fresh venv, a PATH with no
cc/g++/c++, LD_LIBRARY_PATH empty; it imports, reports its version, echoes over WebSocket and
completes a TLS handshake. The sdist carries what a build from a clean directory needs.

The wheel comes from UWS_PY_WHEEL (and the sdist from UWS_PY_SDIST), which .ci/run sets after
running scripts/build_wheels.sh once. Unset, this module builds both itself (a full compile).
Set to a missing file, the tests fail: in CI a missing wheel is an error, not a skip.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import ssl
import subprocess
import sys
import tarfile
import tomllib
import venv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.sync.client import connect

from tests.support.tlsutil import make_self_signed

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
COMPILERS = ("cc", "gcc", "g++", "c++", "clang", "clang++")
INSTALL_TIMEOUT = 300
SERVER_START_TIMEOUT = 20
CLIENT_TIMEOUT = 10

# Runs inside the fresh venv: one App, a WebSocket echo on every path, over TLS when given a
# certificate; prints the port it listens on and serves until stdin closes.
SERVER = """
import sys, threading
from uws_py import App, SSLOptions

tls = SSLOptions(sys.argv[1], sys.argv[2]) if len(sys.argv) == 3 else None
app = App(ssl=tls)
app.ws("/*", {"message": lambda ws, message, opcode: ws.send(message, opcode)})
app.listen(0, host="127.0.0.1")
print(app.port, flush=True)
threading.Thread(target=lambda: (sys.stdin.read(), app.defer(app.close)), daemon=True).start()
app.run()
"""


@dataclass(frozen=True)
class Artifacts:
    wheel: Path
    sdist: Path


def _from_environment(name: str) -> Path:
    path = Path(os.environ[name])
    if not path.is_file():
        pytest.fail(f"{name}={path} does not exist: run scripts/build_wheels.sh first")
    return path


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Artifacts:
    """The wheel and sdist named by UWS_PY_WHEEL / UWS_PY_SDIST, or built here when unset."""
    if "UWS_PY_WHEEL" in os.environ:
        wheel = _from_environment("UWS_PY_WHEEL")
        sdist = _from_environment("UWS_PY_SDIST") if "UWS_PY_SDIST" in os.environ else None
        if sdist is None:
            found = sorted((wheel.parent.parent / "dist").glob("uws_py-*.tar.gz"))
            if len(found) != 1:
                pytest.fail(f"UWS_PY_SDIST unset and no single sdist next to {wheel}: {found}")
            sdist = found[0]
        return Artifacts(wheel, sdist)
    out = tmp_path_factory.mktemp("build")
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build_wheels.sh"), str(out)],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if result.returncode != 0:
        pytest.fail(f"scripts/build_wheels.sh failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    wheels = sorted((out / "wheelhouse").glob("uws_py-*manylinux*.whl"))
    sdists = sorted((out / "dist").glob("uws_py-*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, (wheels, sdists)
    return Artifacts(wheels[0], sdists[0])


def _path_without_compilers(tmp_path: Path, venv_bin: Path) -> str:
    """A PATH of the venv's bin/ and a directory of links to a few tools the test needs; asserts
    that no compiler is reachable through it."""
    tools = tmp_path / "tools"
    tools.mkdir()
    for tool in ("sh", "env", "ls", "cat"):
        found = shutil.which(tool)
        if found:
            (tools / tool).symlink_to(found)
    path = os.pathsep.join([str(venv_bin), str(tools)])
    for compiler in COMPILERS:
        assert shutil.which(compiler, path=path) is None, f"{compiler} is reachable through {path}"
    return path


@pytest.fixture(scope="module")
def installed(artifacts, tmp_path_factory) -> dict:
    """A fresh venv with the wheel installed; returns the environment to run it with."""
    base = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=True).create(base / "venv")
    venv_bin = base / "venv" / "bin"
    env = {
        "PATH": _path_without_compilers(base, venv_bin),
        "LD_LIBRARY_PATH": "",
        "HOME": str(base),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        # The wheel's dependencies come from the same indexes this interpreter was set up from.
        **{name: value for name, value in os.environ.items() if name.startswith("PIP_") and name != "PIP_REQUIRE_VIRTUALENV"},
    }
    # --only-binary: pip must not fall back to building anything from source.
    subprocess.run(
        [str(venv_bin / "python"), "-m", "pip", "install", "--only-binary", ":all:", str(artifacts.wheel)],
        env=env,
        check=True,
        capture_output=True,
        timeout=INSTALL_TIMEOUT,
    )
    return {"env": env, "python": str(venv_bin / "python"), "uws_py": str(venv_bin / "uws-py"), "base": base}


def _project_version() -> str:
    namespace: dict = {}
    exec((ROOT / "python" / "uws_py" / "_version.py").read_text(), namespace)
    return namespace["__version__"]


def test_wheel_is_manylinux_with_the_extension_and_its_stub(artifacts):
    assert "manylinux" in artifacts.wheel.name
    with zipfile.ZipFile(artifacts.wheel) as wheel:
        names = wheel.namelist()
    assert any(name.startswith("uws_py/_core.") and name.endswith(".so") for name in names), names
    assert "uws_py/py.typed" in names and "uws_py/_core.pyi" in names
    # The live dashboard's page is served from files inside the package.
    for asset in ("dashboard.html", "dashboard.js", "dashboard.css"):
        assert f"uws_py/monitoring/static/{asset}" in names, asset


def test_wheel_carries_the_javascript_client_as_served(artifacts):
    """RealtimeServer serves uws_py/static/client.js at /realtime/client.js: the wheel must
    carry it, byte for byte the client's source."""
    with zipfile.ZipFile(artifacts.wheel) as wheel:
        assert "uws_py/static/client.js" in wheel.namelist()
        packaged = wheel.read("uws_py/static/client.js")
    assert packaged == (ROOT / "clients" / "js" / "src" / "index.js").read_bytes()


def test_installed_server_finds_the_packaged_javascript_client(installed):
    code = ("from uws_py.realtime.client_script import PACKAGED, find_client_script; "
            "print(find_client_script() == PACKAGED, PACKAGED.stat().st_size)")
    result = subprocess.run([installed["python"], "-c", code], env=installed["env"], capture_output=True, text=True, timeout=30, check=True)
    found, size = result.stdout.split()
    assert found == "True" and int(size) == (ROOT / "clients" / "js" / "src" / "index.js").stat().st_size


def test_installed_package_imports_from_the_venv_with_its_version(installed):
    code = "import uws_py, importlib.metadata as m; print(uws_py.__file__); print(uws_py.__version__); print(m.version('uws-py'))"
    result = subprocess.run([installed["python"], "-c", code], env=installed["env"], capture_output=True, text=True, timeout=30, check=True)
    location, module_version, metadata_version = result.stdout.split()
    assert Path(location).is_relative_to(installed["base"]), location
    assert module_version == metadata_version == _project_version()


def test_console_script_reports_the_version(installed):
    result = subprocess.run([installed["uws_py"], "--version"], env=installed["env"], capture_output=True, text=True, timeout=30, check=True)
    assert result.stdout.strip() == f"uws-py {_project_version()}"


def test_core_resolves_every_library_from_the_wheel_or_the_c_runtime(installed):
    """With LD_LIBRARY_PATH empty, what the extension loads comes from the wheel (uws_py.libs/,
    if auditwheel grafted anything) or is guaranteed by every manylinux policy (libc, libm,
    libstdc++, libgcc_s, libz, the loader); OpenSSL is linked in, not loaded."""
    code = "import uws_py._core as c; print(c.__file__)"
    core = subprocess.run([installed["python"], "-c", code], env=installed["env"], capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    resolved = subprocess.run(["ldd", core], env={"LD_LIBRARY_PATH": ""}, capture_output=True, text=True, check=True, timeout=30).stdout
    system = ("linux-vdso", "libc.so", "libm.so", "libstdc++.so", "libgcc_s.so", "libz.so.1", "ld-linux", "libpthread.so", "libdl.so")
    for line in resolved.splitlines():
        library = line.split()[0]
        assert "not found" not in line, line
        assert not library.startswith(("libssl", "libcrypto")), f"{core} loads {line.strip()}"
        if not library.startswith(system) and not library.startswith("/"):
            target = line.split("=>")[1].split()[0]
            assert Path(target).is_relative_to(installed["base"]), f"{library} is loaded from outside the venv: {line.strip()}"


class _Server:
    """The SERVER script run by the venv's python; stops when its stdin closes."""

    def __init__(self, installed: dict, *args: str) -> None:
        self.process = subprocess.Popen(
            [installed["python"], "-c", SERVER, *args],
            env=installed["env"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.port = self._read_port()

    def _read_port(self) -> int:
        ready, _, _ = select.select([self.process.stdout], [], [], SERVER_START_TIMEOUT)
        line = self.process.stdout.readline() if ready else ""
        if not line.strip().isdigit():
            self.process.kill()
            self.process.wait(timeout=10)
            raise AssertionError(f"server did not start within {SERVER_START_TIMEOUT} s: {line!r} {self.process.stderr.read()}")
        return int(line)

    def stop(self) -> int:
        self.process.stdin.close()
        try:
            return self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise AssertionError("server did not stop when its stdin closed")


@pytest.fixture
def serve(installed):
    servers = []

    def start(*args: str) -> _Server:
        servers.append(_Server(installed, *args))
        return servers[-1]

    yield start
    for server in servers:
        if server.process.poll() is None:
            assert server.stop() == 0, server.process.stderr.read()


def test_websocket_echo_from_the_installed_wheel(serve):
    server = serve()
    with connect(f"ws://{HOST}:{server.port}/echo", open_timeout=CLIENT_TIMEOUT, close_timeout=CLIENT_TIMEOUT) as client:
        client.send("from a fresh venv")
        assert client.recv(timeout=CLIENT_TIMEOUT) == "from a fresh venv"
        client.send(b"\x00\x01binary")
        assert client.recv(timeout=CLIENT_TIMEOUT) == b"\x00\x01binary"


def test_tls_handshake_and_echo_from_the_installed_wheel(serve, tmp_path):
    cert, key = make_self_signed(tmp_path)
    server = serve(str(cert), str(key))
    context = ssl.create_default_context(cafile=str(cert))
    with socket.create_connection((HOST, server.port), timeout=CLIENT_TIMEOUT) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
            assert tls.getpeercert()["subject"] == ((("commonName", "localhost"),),)
    with connect(f"wss://{HOST}:{server.port}/echo", ssl=context, server_hostname="localhost", open_timeout=CLIENT_TIMEOUT) as client:
        client.send("over TLS")
        assert client.recv(timeout=CLIENT_TIMEOUT) == "over TLS"


def test_sdist_carries_the_sources_tests_and_metadata(artifacts):
    with tarfile.open(artifacts.sdist) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    for required in ("pyproject.toml", "CMakeLists.txt", "LICENSE", "CHANGELOG.md", "README.md", "PKG-INFO", "python/uws_py/_version.py", "python/uws_py/py.typed"):
        assert required in names, required
    for directory in ("cpp/include/uws/", "cpp/src/", "cpp/bindings/", "cpp/tests/", "tests/unit/", "tests/integration/"):
        assert any(name.startswith(directory) for name in names), directory
    for js_file in ("clients/js/package.json", "clients/js/src/index.js", "clients/js/src/index.d.ts"):
        assert js_file in names, js_file
    leftovers = [name for name in names if "node_modules/" in name or name.endswith((".so", ".pyc")) or name.startswith(("build/", "dist/", "wheelhouse/"))]
    assert not leftovers, leftovers
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" in project["dynamic"] and "version" not in project
