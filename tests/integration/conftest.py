"""Fixtures for the integration tests: servers on loopback that stop at teardown."""

from __future__ import annotations

from typing import Optional

import pytest

from uws_py import RealtimeServer

from tests.support.harness import Recorder, Server, ServerPool
from tests.support.realtime import LiveServer

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


@pytest.fixture
def serve():
    """serve(server) -> LiveServer, stopped at teardown."""
    live_servers: list[LiveServer] = []

    def start(server: RealtimeServer) -> LiveServer:
        live = LiveServer(server)
        live_servers.append(live)
        return live

    yield start
    failures = []
    for live in live_servers:
        try:
            live.stop()
        except AssertionError as error:
            failures.append(str(error))
    assert not failures, "; ".join(failures)


@pytest.fixture
def pool(recorder):
    """A ServerPool whose servers stop at teardown."""
    servers = ServerPool()
    yield servers
    servers.stop_all()
