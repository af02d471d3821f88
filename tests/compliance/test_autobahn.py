"""Autobahn TestSuite conformance through kosoku, against the echo server on our core."""

from __future__ import annotations

import collections
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.support.tlsutil import make_self_signed

HERE = Path(__file__).parent
# (server compression mode, TLS, case groups, number of cases kosoku must report for them)
SUITES = {
    "core": ("none", False, ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*"], 301),
    "deflate-shared": ("shared", False, ["12.*", "13.*"], 216),
    "deflate-dedicated": ("dedicated", False, ["12.*", "13.*"], 216),
    # kosoku speaks ws:// only: a local TLS tunnel carries its frames into our wss:// server.
    "tls": ("none", True, ["1.*", "5.*"], 36),
}


def kosoku_command() -> list[str]:
    executable = shutil.which("kosoku") or str(Path(sys.executable).parent / "kosoku")
    if not Path(executable).exists():
        pytest.fail("kosoku is not installed: pip install '.[test]'")
    return [executable]


def start_process(arguments: list[str]):
    # stderr goes to a file: a pipe nobody drains would block a chatty server.
    log = tempfile.TemporaryFile(mode="w+")
    process = subprocess.Popen([sys.executable, *arguments], stdout=subprocess.PIPE, stderr=log, text=True)
    process.log = log  # type: ignore[attr-defined]
    try:
        line = process.stdout.readline()
        if not line.startswith("listening"):
            process.kill()
            process.wait()
            log.seek(0)
            pytest.fail(f"{arguments[0]} did not start: {line!r} {log.read()}")
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
    process.log.seek(0)
    assert process.returncode in (0, -15), process.log.read()


@pytest.fixture(scope="module")
def suite_runs(tmp_path_factory):
    """Runs every suite at once (each against its own server) and yields their results."""
    cert, key = make_self_signed(tmp_path_factory.mktemp("tls"))
    runs = {}
    helpers = []
    try:
        for name, (compression, tls, groups, _) in SUITES.items():
            arguments = [str(HERE / "echo_server.py"), "0", compression]
            if tls:
                arguments += [str(cert), str(key)]
            server, port = start_process(arguments)
            if tls:
                helpers.append(server)
                server, port = start_process([str(HERE / "tls_tunnel.py"), str(port)])
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
        # Every process is stopped even when one of them exited badly (that one is reported
        # after): a crashed echo server used to leave the TLS suite's server running.
        failures = []
        for server, kosoku, _ in runs.values():
            if kosoku.poll() is None:
                kosoku.kill()
                kosoku.wait()
        for process in [server for server, _, _ in runs.values()] + helpers:
            try:
                stop(process)
            except AssertionError as failure:
                failures.append(failure)
        if failures:
            raise failures[0]


@pytest.mark.parametrize("suite", list(SUITES))
def test_autobahn_cases_have_no_failures(suite_runs, suite: str) -> None:
    returncode, output, reports = suite_runs[suite]
    expected_cases = SUITES[suite][3]
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
