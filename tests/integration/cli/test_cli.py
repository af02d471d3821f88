"""The `uws-py` command as a user runs it: a subprocess on loopback, what it prints, how it
exits, what it logs, and the worker supervisor (--workers, SIGKILL, SIGHUP, SIGTERM)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import textwrap
import time

import jwt
import pytest

from tests.support import wsclient
from tests.support.procutil import (
    HOST,
    Process,
    RealtimeClient,
    UwsServer,
    children_of,
    free_port,
    health,
    health_pids,
    http_get,
    metric_value,
    pid_alive,
    run_uws_py,
    uws_py_command,
    wait_until,
)
from tests.support.tlsutil import make_self_signed
from uws_py import __version__

GRACEFUL_EXIT = 10.0
# How long workers may take to start, be replaced or restart (a deadline: the waits poll).
WORKERS_TIMEOUT = 60.0
JWT_SECRET = "cli-test-jwt-secret-0123456789abcdef-do-not-log"
KEY_PASSPHRASE = "cli-test-key-passphrase-do-not-log"


def clean_env(**extra: str) -> dict:
    """This process's environment without any UWS_PY_* setting, plus extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UWS_PY_")}
    env.update(extra)
    return env


def assert_one_line_error(result, *fragments: str) -> None:
    """Exit code 2 and exactly one `uws-py: error: ...` line on stderr containing fragments."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"expected one error line, got {result.stderr!r}"
    assert lines[0].startswith("uws-py: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert "listening" not in result.stdout


# -- simple commands ------------------------------------------------------------------------------


def test_version_prints_the_package_version():
    result = run_uws_py("--version", env=clean_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"uws-py {__version__}"


def test_check_config_prints_the_effective_configuration_with_secrets_masked(tmp_path):
    path = tmp_path / "serve.toml"
    path.write_text(
        textwrap.dedent(
            f"""\
            [serve]
            port = 9555
            workers = 3
            jwt-secret = "{JWT_SECRET}"
            ssl_keyfile_password = "{KEY_PASSPHRASE}"
            rate_limit = "off"
            broker = "redis://127.0.0.1:6400/2"
            """
        )
    )
    result = run_uws_py("check-config", str(path), env=clean_env())
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["port"] == 9555 and shown["workers"] == 3
    assert shown["rate_limit"] == "off" and shown["broker"] == "redis://127.0.0.1:6400/2"
    assert shown["jwt_secret"] == "***" and shown["ssl_keyfile_password"] == "***"
    assert shown["compression"] is True and shown["host"] == "127.0.0.1"
    assert JWT_SECRET not in result.stdout + result.stderr
    assert KEY_PASSPHRASE not in result.stdout + result.stderr


def test_check_config_refuses_an_invalid_file(tmp_path):
    path = tmp_path / "serve.toml"
    path.write_text('[serve]\nlog_format = "xml"\n')
    assert_one_line_error(run_uws_py("check-config", str(path), env=clean_env()), "--log-format", "xml")


# -- bad input: one line on stderr, exit code 2 ------------------------------------------------


def test_unknown_option_is_argparse_usage_error():
    result = run_uws_py("serve", "--no-such-option", env=clean_env())
    assert result.returncode == 2
    assert "unrecognized arguments: --no-such-option" in result.stderr
    assert "listening" not in result.stdout


def test_port_held_by_another_socket(tmp_path):
    with socket.socket() as holder:
        holder.bind((HOST, 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run_uws_py("serve", "--host", HOST, "--port", str(port), env=clean_env())
    assert_one_line_error(result, f"{HOST}:{port}", "in use")


def test_port_held_by_another_uws_py_is_not_shared_silently():
    """SO_REUSEPORT must not let a second, unrelated server take half of the connections."""
    with UwsServer(env=clean_env()) as first:
        result = run_uws_py("serve", "--host", HOST, "--port", str(first.port), env=clean_env())
        assert_one_line_error(result, f"{HOST}:{first.port}")
        assert health(first.port)["pid"] == first.pid


def test_unreadable_certificate(tmp_path):
    missing = tmp_path / "missing-cert.pem"
    result = run_uws_py(
        "serve", "--port", "0", "--ssl-certfile", str(missing), "--ssl-keyfile", str(missing), env=clean_env()
    )
    assert_one_line_error(result, "--ssl-certfile", str(missing))


def test_certificate_without_read_permission(tmp_path):
    cert, key = make_self_signed(tmp_path)
    cert.chmod(0)
    if os.geteuid() == 0:
        # Root reads a mode-000 file; this one (write-only procfs) refuses reading even to root.
        cert = "/proc/sys/vm/compact_memory"
        with pytest.raises(PermissionError):
            open(cert, "rb").close()
    result = run_uws_py("serve", "--port", "0", "--ssl-certfile", str(cert), "--ssl-keyfile", str(key), env=clean_env())
    assert_one_line_error(result, "--ssl-certfile", str(cert))


def test_certificate_that_is_not_pem(tmp_path):
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("this is not a certificate\n")
    result = run_uws_py(
        "serve", "--port", "0", "--ssl-certfile", str(garbage), "--ssl-keyfile", str(garbage), env=clean_env()
    )
    assert_one_line_error(result, str(garbage))


def test_wrong_key_passphrase(tmp_path):
    cert, key = make_self_signed(tmp_path, passphrase=KEY_PASSPHRASE.encode())
    result = run_uws_py(
        "serve", "--port", "0", "--ssl-certfile", str(cert), "--ssl-keyfile", str(key),
        "--ssl-keyfile-password", "not-the-passphrase", env=clean_env(),
    )
    assert_one_line_error(result)
    assert "not-the-passphrase" not in result.stderr


@pytest.mark.parametrize(
    "url, fragment",
    [
        ("http://127.0.0.1:6379/0", "redis://"),
        ("redis://127.0.0.1:port/0", "port"),
        ("redis://127.0.0.1:6379/db", "database"),
    ],
)
def test_malformed_broker_url(url, fragment):
    assert_one_line_error(run_uws_py("serve", "--port", "0", "--broker", url, env=clean_env()), "--broker", fragment)


def test_malformed_broker_url_from_environment():
    result = run_uws_py("serve", "--port", "0", env=clean_env(UWS_PY_BROKER="amqp://127.0.0.1/"))
    assert_one_line_error(result, "--broker", "amqp://")


def test_target_whose_import_fails_shows_the_import_error(tmp_path):
    (tmp_path / "needs_missing.py").write_text("import a_dependency_nobody_installed_42\n")
    result = run_uws_py("serve", "--port", "0", "needs_missing:server", cwd=str(tmp_path), env=clean_env())
    assert_one_line_error(result, "needs_missing", "ModuleNotFoundError", "a_dependency_nobody_installed_42")


def test_target_raising_at_import_shows_the_exception(tmp_path):
    (tmp_path / "explodes.py").write_text("raise RuntimeError('the flux capacitor is missing')\n")
    result = run_uws_py("serve", "--port", "0", "explodes:server", cwd=str(tmp_path), env=clean_env())
    assert_one_line_error(result, "explodes", "RuntimeError", "the flux capacitor is missing")


def test_target_module_without_the_attribute(tmp_path):
    (tmp_path / "empty_module.py").write_text("VALUE = 1\n")
    result = run_uws_py("serve", "--port", "0", "empty_module:server", cwd=str(tmp_path), env=clean_env())
    assert_one_line_error(result, "empty_module", "server")


def test_target_that_is_not_a_server(tmp_path):
    (tmp_path / "not_a_server.py").write_text("server = 42\n")
    result = run_uws_py("serve", "--port", "0", "not_a_server:server", cwd=str(tmp_path), env=clean_env())
    assert_one_line_error(result, "not_a_server:server")


def test_invalid_value_from_config_file(tmp_path):
    path = tmp_path / "serve.toml"
    path.write_text("[serve]\nworkers = 0\n")
    assert_one_line_error(run_uws_py("serve", "--config", str(path), env=clean_env()), "--workers")


# -- serving ----------------------------------------------------------------------------------


def test_builtin_hub_serves_realtime_health_and_metrics_and_stops_on_sigterm():
    with UwsServer(env=clean_env()) as server:
        assert server.path == "/realtime"
        status = health(server.port)
        assert status["status"] == "ok" and status["pid"] == server.pid

        alice, bob = RealtimeClient(server.port), RealtimeClient(server.port)
        bob.subscribe("room")
        alice.publish("room", {"text": "hi"})
        assert bob.expect_message("room") == {"text": "hi"}

        metrics = http_get(server.port, "/metrics")
        assert metrics.status == 200
        assert metric_value(server.port, "uws_connections") == 2.0
        # No broker: no broker metrics.
        assert metric_value(server.port, "uws_broker_connected") is None

        started = time.monotonic()
        server.signal(signal.SIGTERM)
        assert [client.expect_close(GRACEFUL_EXIT) for client in (alice, bob)] == [1001, 1001]
        assert server.wait(GRACEFUL_EXIT) == 0
        # Clients answered the close: nothing should wait for a timeout.
        assert time.monotonic() - started < 3.0


def test_sigint_also_stops_gracefully():
    with UwsServer(env=clean_env()) as server:
        client = RealtimeClient(server.port)
        server.signal(signal.SIGINT)
        assert client.expect_close(GRACEFUL_EXIT) == 1001
        assert server.wait(GRACEFUL_EXIT) == 0


def test_layers_reach_the_running_server(tmp_path):
    """Port from the file, max payload from the environment over the file, rate limit from the
    command line over both, compression off from the environment over the file."""
    port = free_port()
    config = tmp_path / "serve.toml"
    config.write_text(
        f'[serve]\nport = {port}\nmax_payload = 1111\nrate_limit = "1/1s"\ncompression = true\n'
    )
    env = clean_env(UWS_PY_MAX_PAYLOAD="2222", UWS_PY_RATE_LIMIT="2/2s", UWS_PY_COMPRESSION="false")
    with UwsServer("--config", str(config), "--rate-limit", "7/3s", port=None, env=env) as server:
        assert server.port == port
        client = RealtimeClient(
            server.port, headers={"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"}
        )
        capabilities = client.connected["capabilities"]
        assert capabilities["maxPayloadLength"] == 2222
        assert capabilities["rateLimit"] == {"messages": 7, "perSeconds": 3.0}
        assert "sec-websocket-extensions" not in client.ws.response.headers
        client.close()


def test_module_target_is_served(tmp_path):
    (tmp_path / "my_realtime.py").write_text(
        textwrap.dedent(
            """\
            from uws_py import RealtimeServer

            server = RealtimeServer(path="/custom")

            @server.on("double")
            def double(client, message):
                return {"type": "DOUBLED", "value": message["value"] * 2}
            """
        )
    )
    with UwsServer("my_realtime:server", cwd=str(tmp_path), env=clean_env()) as server:
        assert server.path == "/custom"
        client = RealtimeClient(server.port, path="/custom")
        assert client.request({"type": "double", "value": 21}) == {"type": "DOUBLED", "value": 42, "id": 1}
        assert "double" in client.connected["capabilities"]["types"]
        server.signal(signal.SIGTERM)
        assert client.expect_close(GRACEFUL_EXIT) == 1001
        assert server.wait(GRACEFUL_EXIT) == 0


def test_factory_returning_an_app_is_served(tmp_path):
    (tmp_path / "my_app.py").write_text(
        textwrap.dedent(
            """\
            from uws_py import App

            def make():
                app = App()
                app.get("/hello", lambda res, req: res.end("hello from a factory"))
                return app
            """
        )
    )
    with UwsServer("my_app:make", cwd=str(tmp_path), env=clean_env(UWS_PY_LOG_LEVEL="warning")) as server:
        response = http_get(server.port, "/hello")
        assert (response.status, response.body) == (200, b"hello from a factory")
        server.signal(signal.SIGTERM)
        assert server.wait(GRACEFUL_EXIT) == 0


# -- logs --------------------------------------------------------------------------------------


def test_secrets_and_tokens_never_reach_the_log(tmp_path):
    cert, key = make_self_signed(tmp_path, passphrase=KEY_PASSPHRASE.encode())
    tls = wsclient.insecure_tls_context()
    good = jwt.encode({"sub": "alice", "exp": int(time.time()) + 600}, JWT_SECRET, algorithm="HS256")
    forged = jwt.encode({"sub": "mallory", "exp": int(time.time()) + 600}, "another-secret-" * 3, algorithm="HS256")
    with UwsServer(
        "--log-level", "debug", "--access-log",
        "--jwt-secret", JWT_SECRET,
        "--ssl-certfile", str(cert), "--ssl-keyfile", str(key), "--ssl-keyfile-password", KEY_PASSPHRASE,
        env=clean_env(),
    ) as server:
        assert server.stdout_lines[0].startswith(f"uws-py {__version__}: listening on wss://")
        by_query = RealtimeClient(server.port, path=f"/realtime?token={good}", tls=tls)
        by_header = RealtimeClient(server.port, tls=tls, headers={"Authorization": f"Bearer {good}"})
        assert by_query.connected["userId"] == by_header.connected["userId"] == "alice"
        by_query.close()
        by_header.close()
        with pytest.raises(wsclient.HandshakeRefused) as refused:
            wsclient.connect(HOST, server.port, f"/realtime?token={forged}", tls=tls)
        assert refused.value.response.status == 401
        assert http_get(server.port, f"/health?token={good}", tls=tls).status == 200
        server.signal(signal.SIGTERM)
        assert server.wait(GRACEFUL_EXIT) == 0
    log = server.stderr_text()
    # The log is really there, at debug, with the configuration and the access lines...
    assert "configuration:" in log and "'jwt_secret': '***'" in log and "'ssl_keyfile_password': '***'" in log
    assert "101" in log and "401" in log
    # ...and none of the secrets.
    for secret in (JWT_SECRET, KEY_PASSPHRASE, good, forged):
        assert secret not in log, f"{secret[:12]}... appears in the log"
    for secret in (JWT_SECRET, KEY_PASSPHRASE, good, forged):
        assert not any(secret in line for line in server.stdout_lines)


def test_json_log_format_is_one_object_per_line():
    with UwsServer("--log-format", "json", "--access-log", "--log-level", "info", env=clean_env()) as server:
        assert health(server.port)["pid"] == server.pid
        server.signal(signal.SIGTERM)
        assert server.wait(GRACEFUL_EXIT) == 0
    lines = [line for line in server.stderr_text().splitlines() if line.strip()]
    assert lines, "nothing was logged"
    entries = [json.loads(line) for line in lines]
    for entry in entries:
        assert {"time", "level", "logger", "message", "pid"} <= set(entry), entry
        assert entry["pid"] == server.pid
    assert any(entry["logger"] == "uws_py.access" and "/health" in entry["message"] for entry in entries)


def test_no_access_log_silences_requests():
    with UwsServer("--no-access-log", "--log-level", "debug", env=clean_env()) as server:
        health(server.port)
        RealtimeClient(server.port).close()
        server.signal(signal.SIGTERM)
        assert server.wait(GRACEFUL_EXIT) == 0
    assert "configuration:" in server.stderr_text()
    assert "/health" not in server.stderr_text()


# -- workers ------------------------------------------------------------------------------------


def wait_for_workers(server: UwsServer, accept, what: str, tolerate_resets: bool = False) -> set:
    """Polls /health until the set of pids answering it satisfies accept; returns that set."""

    def pids_if_accepted():
        seen = health_pids(server.port, 20, tolerate_resets)
        return seen if accept(seen) else None

    return wait_until(pids_if_accepted, what, timeout=WORKERS_TIMEOUT)


def two_worker_pids(server: UwsServer) -> set:
    pids = wait_for_workers(server, lambda seen: len(seen) == 2, "two workers answering /health")
    assert server.pid not in pids, "the supervisor itself answered /health"
    return pids


def test_two_workers_share_the_port():
    with UwsServer("--workers", "2", env=clean_env()) as server:
        pids = two_worker_pids(server)
        assert pids <= set(children_of(server.pid)), (pids, children_of(server.pid))
        assert health_pids(server.port, 40) == pids


def test_killed_worker_is_restarted():
    with UwsServer("--workers", "2", env=clean_env()) as server:
        pids = two_worker_pids(server)
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        survivor = (pids - {victim}).pop()
        wait_until(lambda: not pid_alive(victim), "the killed worker gone")
        # A connection the kernel queued to the victim as it died is reset; that is not the
        # supervisor's doing, so such requests are skipped while waiting for the replacement.
        new_pids = wait_for_workers(
            server,
            lambda seen: len(seen) == 2 and victim not in seen,
            "a replacement worker answering /health",
            tolerate_resets=True,
        )
        assert survivor in new_pids
        assert "exited with" in server.stderr_text()


def test_sighup_restarts_workers_one_by_one_without_closing_the_port():
    with UwsServer("--workers", "2", env=clean_env()) as server:
        old = two_worker_pids(server)
        server.signal(signal.SIGHUP)
        seen_after, answered, reset = set(), 0, 0
        deadline = time.monotonic() + WORKERS_TIMEOUT
        while time.monotonic() < deadline:
            try:
                pid = health(server.port)["pid"]
            except ConnectionRefusedError:
                raise AssertionError("the port stopped accepting during the rolling restart") from None
            except (wsclient.ConnectionClosed, ConnectionResetError):
                # None expected: the old worker stops only once it accepted what was queued on
                # its socket (test_rolling_restart.py makes many more connections).
                reset += 1
                continue
            answered += 1
            if pid not in old:
                seen_after.add(pid)
            if len(seen_after) == 2 and not any(pid_alive(p) for p in old):
                break
            time.sleep(0.005)
        assert len(seen_after) == 2, f"new workers seen: {seen_after}; old {old}"
        assert not any(pid_alive(p) for p in old), "old workers still running"
        assert reset == 0, f"{reset} requests reset, {answered} answered"
        assert health_pids(server.port, 20) == seen_after


def test_sigterm_stops_supervisor_and_workers_gracefully():
    with UwsServer("--workers", "2", env=clean_env()) as server:
        pids = two_worker_pids(server)
        clients = [RealtimeClient(server.port) for _ in range(8)]
        started = time.monotonic()
        server.signal(signal.SIGTERM)
        codes = [client.expect_close(GRACEFUL_EXIT) for client in clients]
        assert codes == [1001] * len(clients)
        assert server.wait(GRACEFUL_EXIT) == 0
        assert time.monotonic() - started < GRACEFUL_EXIT
        wait_until(lambda: not any(pid_alive(p) for p in pids), "every worker gone", timeout=5.0)


# -- unix domain sockets ----------------------------------------------------------------------------

UDS_LISTENING = re.compile(r"uws-py \S+: listening on unix:(?P<path>\S+) \(ws, path (?P<route>\S+)\)")


def test_uds_serves_the_hub_over_a_unix_socket_and_removes_it_on_exit(tmp_path):
    path = str(tmp_path / "hub.sock")
    server = Process(uws_py_command() + ["serve", "--uds", path], env=clean_env())
    try:
        match = server.wait_for_lines(UDS_LISTENING)[0]
        assert match.group("path") == path and match.group("route") == "/realtime"
        assert os.path.exists(path)

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(5)
        sock.connect(path)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        response, _ = wsclient.read_http_response(sock, time.monotonic() + 5)
        sock.close()
        assert response.status == 200 and json.loads(response.body)["pid"] == server.pid

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(5)
        sock.connect(path)
        key = wsclient.new_key()
        sock.sendall(wsclient.handshake_request("/realtime", "localhost", key))
        response, leftover = wsclient.read_http_response(sock, time.monotonic() + 5)
        assert response.status == 101
        with wsclient.TestClient(sock, response, leftover) as client:
            assert json.loads(client.recv_message().payload)["type"] == "CONNECTED"
            client.send_text(json.dumps({"type": "SUBSCRIBE", "topic": "room", "id": 1}))
            assert json.loads(client.recv_message().payload)["type"] == "SUBSCRIBED"
            server.signal(signal.SIGTERM)
            assert client.expect_close(GRACEFUL_EXIT)[0] == 1001
        assert server.wait(GRACEFUL_EXIT) == 0
        assert not os.path.exists(path), "the unix socket outlived the server"
    finally:
        server.stop()


def test_uds_with_workers_is_a_usage_error(tmp_path):
    result = run_uws_py("serve", "--uds", str(tmp_path / "x.sock"), "--workers", "2", env=clean_env())
    assert_one_line_error(result, "--uds serves one worker")


def test_uds_on_a_path_that_cannot_be_bound_is_a_usage_error(tmp_path):
    result = run_uws_py("serve", "--uds", str(tmp_path / "missing-dir" / "x.sock"), env=clean_env())
    assert_one_line_error(result, "--uds", "missing-dir", "No such file or directory")


# -- connection limits and the backlog (issue 19, connection storm) ---------------------------------


def listen_backlog(port: int) -> int:
    """The backlog of the socket listening on port, as `ss` shows it (Send-Q of a LISTEN socket)."""
    import subprocess

    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, timeout=10, check=True)
    rows = [line.split() for line in out.stdout.splitlines() if line.strip()]
    assert rows, f"nothing listening on {port}: {out.stdout!r}"
    return int(rows[0][2])


def test_serve_applies_backlog_and_connection_limits_with_retry_after():
    with UwsServer("--backlog", "1000", "--max-connections", "1", "--retry-after", "2", "--no-access-log",
                   env=clean_env()) as server:
        assert listen_backlog(server.port) == 1000
        first = wsclient.connect(HOST, server.port, "/realtime")
        try:
            with pytest.raises(wsclient.HandshakeRefused) as refused:
                wsclient.connect(HOST, server.port, "/realtime")
            response = refused.value.response
            assert response.status == 503, response
            assert 2 <= int(response.headers["retry-after"]) <= 4, response.headers
        finally:
            first.close()
