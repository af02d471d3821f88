"""Builds the C++ core's unit tests (cpp/tests/) with CMake and runs them through ctest.

CMakeLists.txt is the one list of test binaries (every cpp/tests/test_*.cpp becomes one ctest
test); this module only builds and runs them. The build is Debug, with the sanitizers named in
the UWS_PY_SANITIZE environment variable (for example "address,undefined") when it is set. The
tests are skipped only when there is no cmake or no C++ compiler; a build that fails is a test
failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

CONFIGURE_TIMEOUT = 120
BUILD_TIMEOUT = 600
CTEST_TIMEOUT = 900


def find_tool(name: str, package: str, attribute: str) -> str | None:
    """`name` on PATH, else the binary shipped by the PyPI package of that name."""
    found = shutil.which(name)
    if found:
        return found
    try:
        module = __import__(package)
    except ImportError:
        return None
    candidate = Path(getattr(module, attribute)) / name
    return str(candidate) if candidate.exists() else None


def find_cxx_compiler() -> str | None:
    requested = os.environ.get("CXX", "").split()
    if requested:  # CMake takes $CXX as it is; it may carry a launcher, e.g. "ccache g++"
        return shutil.which(requested[0])
    for name in ("c++", "g++", "clang++"):
        found = shutil.which(name)
        if found:
            return found
    return None


def run_step(what: str, command: list[str], timeout: int) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        pytest.fail(
            f"{what} failed (exit {result.returncode}): {' '.join(command)}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}",
            pytrace=False,
        )
    return result


class Build:
    """A configured and built test tree, and the ctest that runs it."""

    def __init__(self, directory: Path, ctest: str) -> None:
        self.directory = directory
        self.ctest = ctest

    def test_names(self) -> list[str]:
        listing = run_step(
            "listing the ctest tests",
            [self.ctest, "--test-dir", str(self.directory), "--show-only=json-v1"],
            CONFIGURE_TIMEOUT,
        )
        return sorted(test["name"] for test in json.loads(listing.stdout)["tests"])


@pytest.fixture(scope="session")
def build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    """The build directory holding the test binaries, configured and built once per session."""
    cmake = find_tool("cmake", "cmake", "CMAKE_BIN_DIR")
    if cmake is None:
        pytest.fail("cmake not found (neither on PATH nor as the 'cmake' Python package)")
    ctest = str(Path(cmake).with_name("ctest"))
    if not Path(ctest).exists():
        pytest.fail(f"ctest not found next to {cmake}")
    if find_cxx_compiler() is None:
        pytest.fail("no C++ compiler found ($CXX, c++, g++ or clang++)")

    directory = tmp_path_factory.mktemp("cpp-tests")
    configure = [
        cmake,
        "-S",
        str(REPO),
        "-B",
        str(directory),
        "-DUWS_PY_BUILD_TESTS=ON",
        "-DUWS_PY_BUILD_EXTENSION=OFF",
        "-DCMAKE_BUILD_TYPE=Debug",
    ]
    sanitize = os.environ.get("UWS_PY_SANITIZE")
    if sanitize:
        configure.append(f"-DUWS_PY_SANITIZE={sanitize}")
    ninja = find_tool("ninja", "ninja", "BIN_DIR")
    if ninja is not None:
        configure += ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"]

    run_step("configuring the C++ tests", configure, CONFIGURE_TIMEOUT)
    run_step("building the C++ tests", [cmake, "--build", str(directory), "--parallel", "2"], BUILD_TIMEOUT)
    return Build(directory, ctest)


def test_every_cpp_test_source_is_a_ctest_test(build: Build) -> None:
    sources = sorted(path.stem for path in (REPO / "cpp" / "tests").glob("test_*.cpp"))
    assert sources, "no cpp/tests/test_*.cpp found"
    assert build.test_names() == sources


def test_ctest_passes(build: Build) -> None:
    report = build.directory / "ctest-junit.xml"
    result = subprocess.run(
        [build.ctest, "--test-dir", str(build.directory), "--output-on-failure", "--output-junit", str(report)],
        capture_output=True,
        text=True,
        timeout=CTEST_TIMEOUT,
    )
    output = f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    assert result.returncode == 0, f"ctest exited with {result.returncode}\n{output}"

    cases = ElementTree.parse(report).getroot().iter("testcase")
    ran = {}
    for case in cases:
        name = case.get("name", "")
        ran[name] = case
        assert case.get("status") == "run", f"{name}: status {case.get('status')}\n{output}"
        # The harness's closing line shows that the binary ran its checks rather than
        # exiting early with status 0.
        lines = (case.findtext("system-out") or "").strip().splitlines()
        summary = lines[-1] if lines else ""
        assert summary.startswith(f"{name}: ") and summary.endswith(" passed, 0 failed"), (
            f"{name} passed without its summary line\n{output}"
        )
        assert not summary.startswith(f"{name}: 0 passed"), f"{name} ran no checks"
    assert sorted(ran) == build.test_names()


def test_handshake_uses_openssl_for_sha1_and_base64(build: Build) -> None:
    """Issue 12: the Sec-WebSocket-Accept key is computed with OpenSSL's EVP digest and
    EVP_EncodeBlock, not with SHA-1 and base64 code of our own (test_handshake checks the
    values, RFC 6455's sample key among them; this checks whose code computes them)."""
    nm = shutil.which("nm")
    if nm is None:
        pytest.fail("nm (binutils) not found")
    objects = list(build.directory.rglob("Handshake.cpp.o"))
    assert len(objects) == 1, f"expected one Handshake.cpp.o under {build.directory}, found {objects}"
    symbols = run_step("listing Handshake.cpp.o's symbols", [nm, "-C", str(objects[0])], CONFIGURE_TIMEOUT).stdout
    undefined = {line.split()[-1] for line in symbols.splitlines() if line.split()[:1] == ["U"]}
    assert {"EVP_Digest", "EVP_sha1", "EVP_EncodeBlock"} <= undefined, symbols
    # No compression function of our own: the hand-written one was uws::(anonymous)::sha1Block.
    assert "sha1Block" not in symbols, symbols
