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
# Every case group of the suite except 12.* and 13.* (permessage-deflate, not negotiated yet).
CASE_GROUPS = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*"]
# The number of cases in those groups; fewer means kosoku ran a different selection.
EXPECTED_CASES = 301


def kosoku_command() -> list[str]:
    executable = shutil.which("kosoku") or str(Path(sys.executable).parent / "kosoku")
    if not Path(executable).exists():
        pytest.fail("kosoku is not installed: pip install '.[test]'")
    return [executable]


@pytest.fixture
def echo_server():
    process = subprocess.Popen(
        [sys.executable, str(HERE / "echo_server.py"), "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        if not line.startswith("listening"):
            process.kill()
            pytest.fail(f"echo server did not start: {line!r} {process.stderr.read()}")
        yield int(line.split()[1])
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode in (0, -15), process.stderr.read()


def test_autobahn_cases_have_no_failures(echo_server: int, tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    command = kosoku_command() + ["-p", "4", "-o", str(reports)]
    for group in CASE_GROUPS:
        command += ["-i", group]
    command.append(f"127.0.0.1:{echo_server}")
    completed = subprocess.run(command, capture_output=True, text=True, timeout=900)
    index = json.loads((reports / "index.json").read_text())
    results = next(iter(index.values()))
    counts = collections.Counter(case["behavior"] for case in results.values())
    close_counts = collections.Counter(case["behaviorClose"] for case in results.values())
    print(f"autobahn: {len(results)} cases, behavior {dict(counts)}, close {dict(close_counts)}")
    failed = sorted(
        case_id
        for case_id, case in results.items()
        if case["behavior"] in ("FAILED", "UNIMPLEMENTED") or case["behaviorClose"] == "FAILED"
    )
    assert not failed, f"Autobahn cases failed: {failed}\n{completed.stdout}\n{completed.stderr}"
    assert len(results) == EXPECTED_CASES, completed.stdout
    assert completed.returncode == 0, completed.stdout + completed.stderr
