"""`uws-py serve MODULE:ATTR` with realtime options (issue 12, defect 2): a RealtimeServer
target gets them, an App target makes the command exit 2 naming them, and the workers
warning knows about a target's own broker. Also the per-connection limits from the CLI and
the config file (defect 3)."""

from __future__ import annotations

import os
import signal
import textwrap
import time

import jwt

from tests.support import wsclient
from tests.support.procutil import HOST, RealtimeClient, RedisServer, UwsServer, run_uws_py, wait_until

GRACEFUL_EXIT = 10.0
JWT_SECRET = "cli-target-test-jwt-secret-0123456789abcdef"


def clean_env(**extra: str) -> dict:
    """This process's environment without any UWS_PY_* setting, plus extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UWS_PY_")}
    env.update(extra)
    return env


def assert_one_line_error(result, *fragments: str) -> None:
    """Exit code 2 and exactly one `uws-py: error: ...` line on stderr containing fragments."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("uws-py: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])

REALTIME_TARGET = """\
from uws_py import RealtimeServer

server = RealtimeServer(path="/custom")

@server.on("double")
def double(client, message):
    return {"type": "DOUBLED", "value": message["value"] * 2}
"""


def write(tmp_path, name: str, source: str) -> str:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    return str(tmp_path)


def test_serve_target_applies_realtime_options(tmp_path):
    cwd = write(tmp_path, "rt_target", REALTIME_TARGET)
    args = ["rt_target:server", "--jwt-secret", JWT_SECRET, "--rate-limit", "7/60s", "--max-payload", "3000",
            "--idle-timeout", "30", "--no-compression", "--max-subscriptions", "5", "--max-topic-length", "40",
            "--max-batch-items", "9", "--compression-threshold", "512"]
    with UwsServer(*args, cwd=cwd, env=clean_env()) as server:
        assert server.path == "/custom"
        refused = None
        try:
            wsclient.connect(HOST, server.port, "/custom")
        except wsclient.HandshakeRefused as exc:
            refused = exc.response
        assert refused is not None and refused.status == 401, "--jwt-secret was not applied"
        token = jwt.encode({"sub": "alice", "exp": time.time() + 60}, JWT_SECRET, algorithm="HS256")
        client = RealtimeClient(server.port, path="/custom", headers=[("Authorization", f"Bearer {token}")])
        capabilities = client.connected["capabilities"]
        assert capabilities["rateLimit"] == {"messages": 7, "perSeconds": 60.0}
        assert capabilities["maxPayloadLength"] == 3000
        assert capabilities["compression"] is False
        assert (capabilities["maxSubscriptions"], capabilities["maxTopicLength"], capabilities["maxBatchItems"],
                capabilities["compressionThreshold"]) == (5, 40, 9, 512)
        assert "double" in capabilities["types"], "the target's handlers were lost"
        assert client.request({"type": "double", "value": 21}) == {"type": "DOUBLED", "value": 42, "id": 1}
        server.signal(signal.SIGTERM)
        assert client.expect_close() == 1001  # answered, so the server need not wait out its close timeout
        assert server.wait(GRACEFUL_EXIT) == 0


def test_serve_target_access_log_option_is_applied(tmp_path):
    cwd = write(tmp_path, "rt_logged", REALTIME_TARGET)
    with UwsServer("rt_logged:server", "--access-log", cwd=cwd, env=clean_env()) as server:
        RealtimeClient(server.port, path="/custom").ws.close()
        wait_until(lambda: '"GET /custom" 101' in server.stderr_text(), "an access log line for the upgrade")
        server.signal(signal.SIGTERM)
        assert server.wait(GRACEFUL_EXIT) == 0


def test_serve_app_target_refuses_realtime_options(tmp_path):
    cwd = write(tmp_path, "plain_app", """\
        from uws_py import App

        app = App()
        app.get("/", lambda res, req: res.end("hi"))
        """)
    result = run_uws_py("serve", "plain_app:app", "--port", "0", "--jwt-secret", JWT_SECRET, "--rate-limit", "5/1s",
                        "--max-payload", "10", cwd=cwd, env=clean_env())
    assert_one_line_error(result, "--jwt-secret, --rate-limit, --max-payload", "cannot apply to plain_app:app, an App")
    assert JWT_SECRET not in result.stderr
    from_env = run_uws_py("serve", "plain_app:app", "--port", "0", cwd=cwd,
                          env=clean_env(UWS_PY_BROKER="redis://127.0.0.1:1/0"))
    assert_one_line_error(from_env, "--broker cannot apply")


def test_workers_warning_respects_a_targets_own_broker(tmp_path):
    redis = RedisServer().start()
    try:
        cwd = write(tmp_path, "brokered", f"""\
            from uws_py import RealtimeServer
            from uws_py.broker.redis import RedisBroker

            server = RealtimeServer(broker=RedisBroker({redis.url!r}))
            """)
        write(tmp_path, "unbrokered", "from uws_py import RealtimeServer\nserver = RealtimeServer()\n")
        with UwsServer("brokered:server", "--workers", "2", cwd=cwd, env=clean_env()) as server:
            RealtimeClient(server.port).ws.close()
            server.signal(signal.SIGTERM)
            assert server.wait(GRACEFUL_EXIT) == 0
            assert "without --broker" not in server.stderr_text()
            assert "has no broker" not in server.stderr_text()
        with UwsServer("unbrokered:server", "--workers", "2", cwd=cwd, env=clean_env()) as server:
            wait_until(lambda: "unbrokered:server has no broker" in server.stderr_text(), "the workers warning")
            server.signal(signal.SIGTERM)
            assert server.wait(GRACEFUL_EXIT) == 0
    finally:
        redis.stop()


def test_limits_from_the_config_file_reach_connected(tmp_path):
    path = tmp_path / "serve.toml"
    path.write_text(textwrap.dedent("""\
        [serve]
        max-subscriptions = 2
        max_topic_length = 16
        max_batch_items = 4
        trusted_proxy = ["10.0.0.0/8"]
        """))
    with UwsServer("--config", str(path), env=clean_env()) as server:
        client = RealtimeClient(server.port)
        capabilities = client.connected["capabilities"]
        assert (capabilities["maxSubscriptions"], capabilities["maxTopicLength"], capabilities["maxBatchItems"]) \
            == (2, 16, 4)
        client.subscribe("a")
        client.subscribe("b")
        refused = client.request({"type": "SUBSCRIBE", "topic": "c"})
        assert refused["code"] == "LIMIT_EXCEEDED" and refused["limit"] == "maxSubscriptions"
        server.signal(signal.SIGTERM)
        assert client.expect_close() == 1001  # answered, so the server need not wait out its close timeout
        assert server.wait(GRACEFUL_EXIT) == 0


def test_bad_trusted_proxy_is_a_usage_error():
    result = run_uws_py("serve", "--port", "0", "--trusted-proxy", "10.0.0.0/33", env=clean_env())
    assert_one_line_error(result, "--trusted-proxy", "'10.0.0.0/33'")
