"""uws_py.broker.redis_once: which failures of redis-py's clients (one Redis or a Cluster) let
the brokers and the history store send a command again (it reached no server), and which never
do (it may have run: a timeout, a connection lost after the write); that redis-py retries
nothing itself for them, and that its pool of one Redis still checks an idle connection before
handing it out (what keeps an idle restart from costing a publish). No sockets: the exceptions
are built as redis-py builds them."""

from __future__ import annotations

import inspect

import pytest
from redis import exceptions
from redis.asyncio import connection as aio_connection
from redis.utils import format_error_message

from uws_py.broker.redis import RedisBroker
from uws_py.broker.redis_cluster import RedisClusterBroker
from uws_py.broker.redis_once import certainly_not_sent, no_retries
from uws_py.broker.redis_pool import NO_FREE_CONNECTION, no_free_connection
from uws_py.realtime.history import HistoryOptions, HistoryPolicy
from uws_py.realtime.history_redis import RedisHistory

BROKERS = [(RedisBroker, "redis://127.0.0.1:6379/0"), (RedisClusterBroker, "redis+cluster://127.0.0.1:7000")]


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


def test_redis_py_still_checks_an_idle_connection_before_handing_it_out():
    # One Redis: a connection the server closed while idle is replaced by the pool before the
    # command is written (the restart tests of test_redis_cut_reply.py count on it). If
    # redis-py stops doing so, such a publish is reported failed (never sent twice): this
    # test says so.
    source = inspect.getsource(aio_connection.ConnectionPool.ensure_connection)
    assert "can_read()" in source and "disconnect()" in source
    assert "self.ensure_connection(connection)" in inspect.getsource(aio_connection.BlockingConnectionPool.get_connection)


def test_the_history_store_of_one_redis_gets_no_redis_py_retries():
    # It had one after a ConnectionError: the publish script sent again after a connection
    # lost once it was written (stored at two offsets).
    assert no_retries().get_retries() == 0
    store = RedisHistory("redis://127.0.0.1:6379/0", HistoryPolicy([HistoryOptions("chat.*")]))
    connection = store._connection().connection_pool.make_connection()
    assert connection.retry.get_retries() == 0


def test_a_pool_with_no_free_connection_is_told_apart():
    assert no_free_connection(exceptions.ConnectionError(NO_FREE_CONNECTION))
    assert not no_free_connection(exceptions.ConnectionError("Connection closed by server."))
    assert "ConnectionError(\"No connection available.\")" in inspect.getsource(
        aio_connection.BlockingConnectionPool.get_connection)


@pytest.mark.parametrize("broker, url", BROKERS, ids=lambda value: getattr(value, "__name__", ""))
@pytest.mark.parametrize("bad", [0, -1, True, "1", None])
def test_publish_timeout_must_be_a_positive_number(broker, url, bad):
    with pytest.raises(ValueError, match="publish_timeout"):
        broker(url, publish_timeout=bad)


@pytest.mark.parametrize("broker, url", BROKERS, ids=lambda value: getattr(value, "__name__", ""))
def test_publish_timeout_is_kept(broker, url):
    assert broker(url, publish_timeout=0.25).publish_timeout == 0.25


@pytest.mark.parametrize("exc, may_be_applied", [
    (exceptions.ConnectionError(format_error_message("127.0.0.1:6379", ConnectionRefusedError(111, "refused"))), False),
    (exceptions.ConnectionError(NO_FREE_CONNECTION), False),
    (exceptions.ConnectionError("Connection closed by server."), True),
    (exceptions.ConnectionError("Error while reading from 127.0.0.1:6379 : (104, 'Connection reset by peer')"), True),
    (exceptions.TimeoutError("Timeout reading from 127.0.0.1:6379"), True),
], ids=lambda value: str(value)[:30])
def test_the_history_store_says_whether_a_failed_write_may_still_be_applied(exc, may_be_applied):
    from uws_py.realtime.history import HistoryUnavailable

    store = RedisHistory("redis://127.0.0.1:6379/0", HistoryPolicy([HistoryOptions("chat.*")]))
    failure = store._failure(exc)
    assert isinstance(failure, HistoryUnavailable)
    assert ("may still be applied" in str(failure)) is may_be_applied, failure
