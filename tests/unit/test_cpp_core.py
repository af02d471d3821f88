"""Builds the C++ core's unit tests (cpp/tests/) with CMake and runs each binary.

The build is Debug, with the sanitizers named in the UWS_PY_SANITIZE environment variable (for
example "address,undefined") when it is set. The tests are skipped only when there is no cmake or
no C++ compiler; a build that fails is a test failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# The executables that CMakeLists.txt builds from cpp/tests/<name>.cpp.
TEST_BINARIES = ["test_utf8", "test_http_parser", "test_frame_parser", "test_handshake", "test_router", "test_deflate", "test_topic_tree"]

CONFIGURE_TIMEOUT = 120
BUILD_TIMEOUT = 600
RUN_TIMEOUT = 120


def find_cmake() -> str | None:
    found = shutil.which("cmake")
    if found:
        return found
    try:
        import cmake  # the PyPI package ships a cmake binary
    except ImportError:
        return None
    candidate = Path(cmake.CMAKE_BIN_DIR) / "cmake"
    return str(candidate) if candidate.exists() else None


def find_ninja() -> str | None:
    found = shutil.which("ninja")
    if found:
        return found
    try:
        import ninja  # the PyPI package ships a ninja binary
    except ImportError:
        return None
    candidate = Path(ninja.BIN_DIR) / "ninja"
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


def run_step(what: str, command: list[str], timeout: int) -> None:
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        pytest.fail(
            f"{what} failed (exit {result.returncode}): {' '.join(command)}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def cpp_test_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The build directory holding the test binaries, configured and built once per session."""
    cmake = find_cmake()
    if cmake is None:
        pytest.skip("cmake not found (neither on PATH nor as the 'cmake' Python package)")
    if find_cxx_compiler() is None:
        pytest.skip("no C++ compiler found ($CXX, c++, g++ or clang++)")

    build_dir = tmp_path_factory.mktemp("cpp-tests")
    configure = [
        cmake,
        "-S",
        str(REPO),
        "-B",
        str(build_dir),
        "-DUWS_PY_BUILD_TESTS=ON",
        "-DUWS_PY_BUILD_EXTENSION=OFF",
        "-DCMAKE_BUILD_TYPE=Debug",
    ]
    sanitize = os.environ.get("UWS_PY_SANITIZE")
    if sanitize:
        configure.append(f"-DUWS_PY_SANITIZE={sanitize}")
    ninja = find_ninja()
    if ninja is not None:
        configure += ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"]

    run_step("configuring the C++ tests", configure, CONFIGURE_TIMEOUT)
    build = [cmake, "--build", str(build_dir), "--parallel", "2", "--target", *TEST_BINARIES]
    run_step("building the C++ tests", build, BUILD_TIMEOUT)
    return build_dir


@pytest.mark.parametrize("name", TEST_BINARIES)
def test_cpp_unit_tests(cpp_test_dir: Path, name: str) -> None:
    binary = cpp_test_dir / name
    assert binary.exists(), f"{binary} was not built"
    env = dict(os.environ)
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
    result = subprocess.run([str(binary)], capture_output=True, text=True, timeout=RUN_TIMEOUT, env=env)
    output = f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    if result.returncode != 0:
        pytest.fail(f"{name} exited with {result.returncode}\n{output}", pytrace=False)
    # The harness's closing line shows that the binary ran its checks rather than exiting early.
    lines = result.stdout.strip().splitlines()
    summary = lines[-1] if lines else ""
    if not (summary.startswith(f"{name}: ") and summary.endswith(" passed, 0 failed")):
        pytest.fail(f"{name} exited with 0 but without its summary line\n{output}", pytrace=False)


def test_every_cpp_test_source_is_run() -> None:
    sources = sorted(path.stem for path in (REPO / "cpp" / "tests").glob("test_*.cpp"))
    assert sources == sorted(TEST_BINARIES)
