"""Autobahn TestSuite conformance through kosoku, against the echo server on our core."""

from __future__ import annotations

import collections
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
# (server compression mode, case groups, number of cases kosoku must report for them)
SUITES = {
    "core": ("none", ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*"], 301),
    "deflate-shared": ("shared", ["12.*", "13.*"], 216),
    "deflate-dedicated": ("dedicated", ["12.*", "13.*"], 216),
}


def kosoku_command() -> list[str]:
    executable = shutil.which("kosoku") or str(Path(sys.executable).parent / "kosoku")
    if not Path(executable).exists():
        pytest.fail("kosoku is not installed: pip install '.[test]'")
    return [executable]


def start_echo_server(compression: str):
    process = subprocess.Popen(
        [sys.executable, str(HERE / "echo_server.py"), "0", compression],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        if not line.startswith("listening"):
            process.kill()
            pytest.fail(f"echo server did not start: {line!r} {process.stderr.read()}")
        return process, int(line.split()[1])
    except BaseException:
        process.kill()
        raise


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    assert process.returncode in (0, -15), process.stderr.read()


@pytest.fixture(scope="module")
def suite_runs(tmp_path_factory):
    """Runs every suite at once (each against its own server) and yields their results."""
    runs = {}
    try:
        for name, (compression, groups, _) in SUITES.items():
            server, port = start_echo_server(compression)
            reports = tmp_path_factory.mktemp(name)
            command = kosoku_command() + ["-p", "4", "-o", str(reports)]
            for group in groups:
                command += ["-i", group]
            command.append(f"127.0.0.1:{port}")
            kosoku = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            runs[name] = (server, kosoku, reports)
        results = {}
        for name, (server, kosoku, reports) in runs.items():
            output, _ = kosoku.communicate(timeout=1500)
            results[name] = (kosoku.returncode, output, reports)
        yield results
    finally:
        for server, kosoku, _ in runs.values():
            if kosoku.poll() is None:
                kosoku.kill()
                kosoku.wait()
            stop(server)


@pytest.mark.parametrize("suite", list(SUITES))
def test_autobahn_cases_have_no_failures(suite_runs, suite: str) -> None:
    returncode, output, reports = suite_runs[suite]
    expected_cases = SUITES[suite][2]
    index = json.loads((reports / "index.json").read_text())
    results = next(iter(index.values()))
    counts = collections.Counter(case["behavior"] for case in results.values())
    close_counts = collections.Counter(case["behaviorClose"] for case in results.values())
    print(f"autobahn {suite}: {len(results)} cases, behavior {dict(counts)}, close {dict(close_counts)}")
    failed = sorted(
        case_id
        for case_id, case in results.items()
        if case["behavior"] in ("FAILED", "UNIMPLEMENTED", "ERROR") or case["behaviorClose"] == "FAILED"
    )
    assert not failed, f"Autobahn cases failed: {failed}\n{output}"
    assert len(results) == expected_cases, output
    assert returncode == 0, output
