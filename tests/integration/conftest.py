"""Fixtures for the integration tests: servers on loopback that stop at teardown."""

from __future__ import annotations

import sys
from typing import Optional
from pathlib import Path

import pytest

# wsclient and harness live in tests/; make them importable whatever the import mode.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import Recorder, Server  # noqa: E402

# Whole-test bound, applied only when pytest-timeout is installed; every wait inside a test has
# its own, smaller timeout anyway.
TEST_TIMEOUT = 90


def pytest_collection_modifyitems(config, items):
    if not config.pluginmanager.hasplugin("timeout"):
        return
    for item in items:
        if "integration" in item.nodeid and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(TEST_TIMEOUT))


@pytest.fixture
def recorder():
    rec = Recorder()
    yield rec
    assert not rec.errors, f"handlers raised: {rec.errors!r}"


@pytest.fixture
def make_server(recorder):
    """make_server(behavior, route="/*") -> a running Server, stopped at teardown.

    It depends on recorder so that the recorder's check runs after the servers have stopped."""
    servers: list = []

    def factory(behavior: Optional[dict], route: str = "/*", setup=None) -> Server:
        server = Server(behavior, route, setup)
        servers.append(server)
        return server

    yield factory
    failures = []
    for server in servers:
        try:
            server.stop()
        except AssertionError as error:
            failures.append(str(error))
    assert not failures, "; ".join(failures)


@pytest.fixture
def echo_server(make_server, recorder) -> Server:
    return make_server(recorder.behavior())
