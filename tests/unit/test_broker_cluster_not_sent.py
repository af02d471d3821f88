"""uws_py.broker.redis_cluster.certainly_not_sent: which failures of redis-py's cluster client
let the broker and the history store send a command again (it reached no node), and which
never do (it may have run: a timeout, a connection lost after the write). No sockets: the
exceptions are built as redis-py builds them."""

from __future__ import annotations

import inspect

import pytest
from redis import exceptions
from redis.asyncio import connection as aio_connection
from redis.utils import format_error_message

from uws_py.broker.redis_cluster import RedisClusterBroker, certainly_not_sent, no_cluster_retries


@pytest.mark.parametrize("exc", [
    exceptions.SlotNotCoveredError("Slot 42 is not covered by the cluster."),
    exceptions.RedisClusterException("Redis Cluster cannot be connected. Please provide at least one reachable node"),
    exceptions.ClusterDownError("CLUSTERDOWN The cluster is down"),
    exceptions.ClusterError("TTL exhausted."),
    exceptions.TryAgainError("TRYAGAIN Multiple keys request during rehashing of slot"),
    exceptions.MovedError("3999 127.0.0.1:6381"),
    exceptions.AskError("3999 127.0.0.1:6381"),
    exceptions.MaxConnectionsError("Too many connections"),
    # Connection.connect_check_health's wording for a refused connect and a connect timeout.
    exceptions.ConnectionError(format_error_message("127.0.0.1:7001", ConnectionRefusedError(111, "Connection refused"))),
    exceptions.ConnectionError(format_error_message("127.0.0.1:7001", OSError("unreachable"))),
    exceptions.TimeoutError("Timeout connecting to server"),
], ids=lambda exc: type(exc).__name__ + ":" + str(exc)[:30])
def test_what_reached_no_node_may_be_sent_again(exc):
    assert certainly_not_sent(exc)


@pytest.mark.parametrize("exc", [
    # Connection.read_response / send_packed_command after the write (or during it).
    exceptions.TimeoutError("Timeout reading from 127.0.0.1:7001"),
    exceptions.TimeoutError("Timeout writing to socket"),
    exceptions.ConnectionError("Connection closed by server."),
    exceptions.ConnectionError("Error while reading from 127.0.0.1:7001 : (104, 'Connection reset by peer')"),
    exceptions.ConnectionError("Error 32 while writing to socket. Broken pipe."),
    # The broker's own limit (asyncio.wait_for) and anything unforeseen.
    TimeoutError(),
    OSError(104, "Connection reset by peer"),
    exceptions.ResponseError("ERR unknown command"),
    RuntimeError("connecting to the moon"),
], ids=lambda exc: type(exc).__name__ + ":" + str(exc)[:30])
def test_what_may_have_run_is_never_sent_again(exc):
    assert not certainly_not_sent(exc)


def test_redis_py_still_words_a_connect_timeout_as_certainly_not_sent_expects():
    # If redis-py changes this wording, connect timeouts stop being retried (safe, but a
    # publish is dropped that could have gone out): this test says so.
    assert '"Timeout connecting to server"' in inspect.getsource(aio_connection.AbstractConnection.connect_check_health)


def test_the_publishing_client_gets_no_redis_py_retries():
    assert no_cluster_retries().get_retries() == 0


@pytest.mark.parametrize("bad", [0, -1, True, "1", None])
def test_publish_timeout_must_be_a_positive_number(bad):
    with pytest.raises(ValueError, match="publish_timeout"):
        RedisClusterBroker("redis+cluster://127.0.0.1:7000", publish_timeout=bad)


def test_publish_timeout_is_kept():
    assert RedisClusterBroker("redis+cluster://127.0.0.1:7000", publish_timeout=0.25).publish_timeout == 0.25
