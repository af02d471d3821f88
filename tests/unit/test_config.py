"""uws_py.config and the parsing half of uws_py.cli: options, their layers (command line >
environment > TOML file > default), coercion and validation, without starting a server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from uws_py import __version__
from uws_py.cli import build_parser, main, resolve_config
from uws_py.config import (
    ConfigError, ServeConfig, load, parse_broker_url, parse_history, parse_presence, parse_rate_limit,
)



def write_toml(directory: Path, text: str) -> str:
    path = directory / "serve.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def resolve(argv: list, environ: dict = None) -> ServeConfig:
    """The configuration `uws-py <argv>` would run with, given only this environment."""
    return resolve_config(build_parser().parse_args(argv), environ or {})


# -- defaults and the command line ---------------------------------------------------------


def test_defaults_with_no_layer():
    config = load(None, {}, {})
    assert config == ServeConfig()
    assert (config.host, config.port, config.workers) == ("127.0.0.1", 8080, 1)
    assert config.rate_limit == "100/60s"
    assert config.max_payload == 100 * 1024 and config.idle_timeout == 120
    assert config.compression is True and config.access_log is True
    assert config.broker is None and config.jwt_secret is None and config.app is None
    assert (config.log_level, config.log_format) == ("info", "human")


def test_every_option_parses_to_its_typed_field():
    config = resolve(
        [
            "serve", "pkg.module:factory",
            "--host", "0.0.0.0", "--port", "9001", "--workers", "3",
            "--jwt-secret", "s", "--jwt-algorithms", "HS256,HS512",
            "--rate-limit", "5/1s", "--max-payload", "2048", "--idle-timeout", "30",
            "--no-compression", "--broker", "redis://localhost:6380/2",
            "--log-level", "debug", "--log-format", "json", "--no-access-log",
        ]
    )
    assert config.app == "pkg.module:factory"
    assert (config.host, config.port, config.workers) == ("0.0.0.0", 9001, 3)
    assert config.jwt_secret == "s" and config.jwt_algorithms == "HS256,HS512"
    assert config.rate_limit == "5/1s"
    assert (config.max_payload, config.idle_timeout) == (2048, 30)
    assert config.compression is False and config.access_log is False
    assert config.broker == "redis://localhost:6380/2"
    assert (config.log_level, config.log_format) == ("debug", "json")


def test_options_left_out_are_absent_from_the_namespace():
    """Absent options must not carry argparse defaults, or they would hide env and file values."""
    args = build_parser().parse_args(["serve", "--port", "1234"])
    given = {k for k in vars(args) if k not in ("command", "config_file")}
    assert given == {"port"}


def test_boolean_flags_both_ways():
    assert resolve(["serve", "--compression"]).compression is True
    assert resolve(["serve", "--no-compression"]).compression is False
    assert resolve(["serve", "--access-log"]).access_log is True
    assert resolve(["serve", "--no-access-log"]).access_log is False


def test_unknown_option_exits_with_argparse_usage_code(capsys):
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["serve", "--no-such-option"])
    assert exited.value.code == 2
    assert "--no-such-option" in capsys.readouterr().err


def test_non_integer_port_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["serve", "--port", "eighty"])
    assert exited.value.code == 2
    assert "--port" in capsys.readouterr().err


def test_a_command_is_required(capsys):
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([])
    assert exited.value.code == 2


def test_version(capsys):
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"uws-py {__version__}"


def test_help_shows_every_option_and_its_environment_variable(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for flag in (
        "--host", "--port", "--workers", "--ssl-certfile", "--ssl-keyfile", "--ssl-keyfile-password",
        "--jwt-secret", "--jwt-public-key", "--jwt-algorithms", "--rate-limit", "--max-payload",
        "--idle-timeout", "--compression", "--no-compression", "--broker", "--log-level",
        "--log-format", "--access-log", "--no-access-log", "--config",
    ):
        assert flag in help_text, flag
    assert "UWS_PY_PORT" in help_text and "UWS_PY_BROKER" in help_text


# -- the environment ------------------------------------------------------------------------


def test_environment_sets_options_with_their_types():
    config = resolve(
        ["serve"],
        {
            "UWS_PY_PORT": "9100",
            "UWS_PY_WORKERS": "2",
            "UWS_PY_COMPRESSION": "false",
            "UWS_PY_ACCESS_LOG": "0",
            "UWS_PY_LOG_FORMAT": "json",
            "UWS_PY_APP": "mod:attr",
            "UWS_PY_BROKER": "redis://127.0.0.1:6379/0",
        },
    )
    assert config.port == 9100 and config.workers == 2
    assert config.compression is False and config.access_log is False
    assert config.log_format == "json"
    assert config.app == "mod:attr"
    assert config.broker == "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize("text", ["1", "true", "TRUE", "yes", "on", " On "])
def test_environment_true_spellings(text):
    assert load(None, {"UWS_PY_COMPRESSION": text}, {}).compression is True


@pytest.mark.parametrize("text", ["0", "false", "False", "no", "off"])
def test_environment_false_spellings(text):
    assert load(None, {"UWS_PY_COMPRESSION": text}, {}).compression is False


def test_environment_bad_boolean_names_the_variable():
    with pytest.raises(ConfigError, match="UWS_PY_COMPRESSION") as raised:
        load(None, {"UWS_PY_COMPRESSION": "maybe"}, {})
    assert "maybe" in str(raised.value)


def test_environment_bad_integer_names_the_variable():
    with pytest.raises(ConfigError, match="UWS_PY_PORT") as raised:
        load(None, {"UWS_PY_PORT": "http"}, {})
    assert "http" in str(raised.value)


def test_unrelated_environment_variables_are_ignored():
    config = load(None, {"UWS_PY": "x", "UWS_PORT": "1", "PORT": "2", "uws_py_port": "3"}, {})
    assert config.port == 8080


def test_resolve_config_reads_os_environ_when_no_environment_is_given(monkeypatch):
    monkeypatch.setenv("UWS_PY_IDLE_TIMEOUT", "77")
    assert resolve_config(build_parser().parse_args(["serve"])).idle_timeout == 77


# -- the TOML file --------------------------------------------------------------------------


def test_file_serve_table_with_dashed_or_underscored_keys(tmp_path):
    path = write_toml(
        tmp_path,
        '[serve]\nport = 9200\nlog-level = "warning"\nmax_payload = 4096\ncompression = false\n'
        'rate-limit = "off"\nbroker = "rediss://cache.example:6390/1"\n',
    )
    config = load(path, {}, {})
    assert config.port == 9200
    assert config.log_level == "warning"
    assert config.max_payload == 4096
    assert config.compression is False
    assert config.rate_limit == "off"
    assert config.broker == "rediss://cache.example:6390/1"


def test_file_given_with_the_config_option(tmp_path):
    path = write_toml(tmp_path, "[serve]\nworkers = 4\n")
    config = resolve(["serve", "--config", path])
    assert config.workers == 4


def test_file_with_unknown_option_is_refused(tmp_path):
    path = write_toml(tmp_path, "[serve]\nport = 1\ncolour = \"blue\"\n")
    with pytest.raises(ConfigError, match="colour"):
        load(path, {}, {})


def test_file_with_wrong_type_is_refused(tmp_path):
    path = write_toml(tmp_path, '[serve]\nworkers = "many"\n')
    with pytest.raises(ConfigError, match="workers"):
        load(path, {}, {})


def test_file_that_is_not_toml_is_refused(tmp_path):
    path = write_toml(tmp_path, "[serve\nport = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(path, {}, {})


def test_missing_file_is_refused(tmp_path):
    missing = str(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="absent.toml"):
        load(missing, {}, {})


# -- precedence: command line > environment > file > default --------------------------------


def test_each_layer_overrides_the_ones_below(tmp_path):
    path = write_toml(
        tmp_path,
        '[serve]\nport = 1001\nworkers = 2\nidle_timeout = 11\nlog_level = "error"\n',
    )
    environ = {"UWS_PY_PORT": "2002", "UWS_PY_WORKERS": "3", "UWS_PY_LOG_LEVEL": "debug"}
    config = resolve(["serve", "--config", path, "--port", "3003"], environ)
    assert config.port == 3003  # command line over environment and file
    assert config.workers == 3  # environment over file
    assert config.log_level == "debug"  # environment over file
    assert config.idle_timeout == 11  # file over default
    assert config.max_payload == 100 * 1024  # default where nobody spoke


def test_negative_boolean_flag_beats_environment_and_file(tmp_path):
    path = write_toml(tmp_path, "[serve]\ncompression = true\naccess_log = false\n")
    config = resolve(
        ["serve", "--config", path, "--no-compression", "--access-log"],
        {"UWS_PY_COMPRESSION": "true", "UWS_PY_ACCESS_LOG": "false"},
    )
    assert config.compression is False
    assert config.access_log is True


def test_environment_false_beats_file_true(tmp_path):
    path = write_toml(tmp_path, "[serve]\ncompression = true\n")
    assert resolve(["serve", "--config", path], {"UWS_PY_COMPRESSION": "no"}).compression is False


def test_positional_app_beats_environment():
    config = resolve(["serve", "cli.module:server"], {"UWS_PY_APP": "env.module:server"})
    assert config.app == "cli.module:server"


def test_command_line_value_is_validated_even_when_environment_is_valid():
    with pytest.raises(ConfigError, match="--port"):
        resolve(["serve", "--port", "70000"], {"UWS_PY_PORT": "80"})


# -- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, named",
    [
        ({"port": -1}, "--port"),
        ({"port": 65536}, "--port"),
        ({"workers": 0}, "--workers"),
        ({"log_level": "verbose"}, "--log-level"),
        ({"log_format": "xml"}, "--log-format"),
        ({"max_payload": 0}, "--max-payload"),
        ({"idle_timeout": -1}, "--idle-timeout"),
        ({"rate_limit": "lots"}, "--rate-limit"),
        ({"ssl_certfile": __file__}, "--ssl-keyfile"),
        ({"ssl_keyfile": __file__}, "--ssl-certfile"),
        ({"ssl_certfile": "/nonexistent/cert.pem", "ssl_keyfile": __file__}, "cannot read /nonexistent/cert.pem"),
        ({"jwt_public_key": "/nonexistent/key.pem"}, "cannot read /nonexistent/key.pem"),
        ({"jwt_secret": "s", "jwt_public_key": __file__}, "not both"),
        ({"broker": "http://127.0.0.1:6379/0"}, "--broker"),
        ({"app": "no_colon_here"}, "MODULE:ATTR"),
        ({"app": "mod:attr; rm -rf"}, "MODULE:ATTR"),
    ],
)
def test_invalid_values_are_refused_naming_the_option(overrides, named):
    with pytest.raises(ConfigError) as raised:
        load(None, {}, overrides)
    assert named in str(raised.value)


def test_port_bounds_are_accepted():
    assert load(None, {}, {"port": 0}).port == 0
    assert load(None, {}, {"port": 65535}).port == 65535


@pytest.mark.parametrize(
    "text, expected",
    [
        ("100/60s", (100, 60.0)),
        ("100/60", (100, 60.0)),
        (" 7 / 2.5s ", (7, 2.5)),
        ("5/500ms", (5, 0.5)),
        ("10/2m", (10, 120.0)),
        ("1/1h", (1, 3600.0)),
        ("off", None),
        ("OFF", None),
        ("none", None),
        (None, None),
    ],
)
def test_rate_limit_spellings(text, expected):
    assert parse_rate_limit(text) == expected


@pytest.mark.parametrize("text", ["", "100", "100/", "/60s", "100/60x", "-1/60s", "0/60s", "10/0s", "1.5/60s"])
def test_rate_limit_refusals(text):
    with pytest.raises(ConfigError, match="rate-limit"):
        parse_rate_limit(text)


@pytest.mark.parametrize(
    "url, expected",
    [
        ("redis://127.0.0.1:6380/0", ("127.0.0.1", 6380, 0)),
        ("redis://cache.internal/3", ("cache.internal", 6379, 3)),
        ("redis://localhost", ("localhost", 6379, 0)),
        ("rediss://user:pw@secure.example:6390/1", ("secure.example", 6390, 1)),
        ("redis+cluster://127.0.0.1:7000,127.0.0.1:7001", [("127.0.0.1", 7000), ("127.0.0.1", 7001)]),
        ("nats://127.0.0.1:4222,nats://other", [("127.0.0.1", 4222), ("other", 4222)]),
    ],
)
def test_broker_urls_accepted(url, expected):
    assert parse_broker_url(url) == expected


@pytest.mark.parametrize(
    "url, named",
    [
        ("http://127.0.0.1:6379/0", "redis://"),
        ("127.0.0.1:6379", "redis://"),
        ("redis://127.0.0.1:notaport/0", "port"),
        ("redis://127.0.0.1:99999/0", "port"),
        ("redis:///0", "host"),
        ("redis://127.0.0.1:6379/zero", "database"),
        ("redis+cluster://127.0.0.1:port", "port"),
        ("nats://127.0.0.1:4222,redis://x", "NATS server"),
    ],
)
def test_malformed_broker_urls_refused(url, named):
    with pytest.raises(ConfigError, match=named):
        parse_broker_url(url)


def test_redacted_masks_secrets_only_when_set():
    shown = load(None, {}, {"jwt_secret": "hunter2-secret", "ssl_keyfile_password": "pass-phrase"}).redacted()
    assert shown["jwt_secret"] == "***"
    assert shown["ssl_keyfile_password"] == "***"
    assert "hunter2-secret" not in json.dumps(shown) and "pass-phrase" not in json.dumps(shown)
    assert shown["port"] == 8080 and shown["broker"] is None
    unset = ServeConfig().redacted()
    assert unset["jwt_secret"] is None and unset["ssl_keyfile_password"] is None
    assert set(unset) == set(ServeConfig.__dataclass_fields__)


# -- main() without serving --------------------------------------------------------------------


def test_main_reports_invalid_configuration_in_one_line(capsys):
    assert main(["serve", "--workers", "0"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "uws-py: error: --workers must be at least 1, not 0\n"


def test_main_reports_environment_error_in_one_line(capsys, monkeypatch):
    monkeypatch.setenv("UWS_PY_MAX_PAYLOAD", "big")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("uws-py: error: ") and err.count("\n") == 1
    assert "UWS_PY_MAX_PAYLOAD" in err


def test_main_check_config_prints_effective_configuration_with_secrets_masked(tmp_path, capsys):
    path = write_toml(tmp_path, '[serve]\nport = 9300\njwt_secret = "file-secret-value"\nworkers = 2\n')
    assert main(["check-config", path]) == 0
    out = capsys.readouterr().out
    shown = json.loads(out)
    assert shown["port"] == 9300 and shown["workers"] == 2
    assert shown["jwt_secret"] == "***"
    assert "file-secret-value" not in out
    assert shown["host"] == "127.0.0.1"  # defaults fill what the file leaves out


def test_main_check_config_refuses_a_bad_file_in_one_line(tmp_path, capsys):
    path = write_toml(tmp_path, "[serve]\nport = 123456\n")
    assert main(["check-config", path]) == 2
    err = capsys.readouterr().err
    assert err.startswith("uws-py: error: ") and err.count("\n") == 1
    assert "--port" in err


# -- history (issue 13) -------------------------------------------------------------------------


def test_history_option_repeats_and_keeps_its_order():
    config = resolve(["serve", "--history", "chat.*:100:300", "--history", "feed.*", "--history-recover-limit", "50"])
    assert config.history == ["chat.*:100:300", "feed.*"]
    assert config.history_recover_limit == 50
    assert load(None, {}, {}).history == [] and load(None, {}, {}).history_recover_limit == 1000


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("chat.*:100:300", ("chat.*", 100, 300.0)),
        ("chat.*", ("chat.*", 100, 300.0)),
        ("chat.*:10", ("chat.*", 10, 300.0)),
        ("room:*:5:2.5", ("room:*", 5, 2.5)),
    ],
)
def test_history_specs(spec, expected):
    assert parse_history(spec) == expected


@pytest.mark.parametrize("spec", ["", ":100:300", "chat.*:0:300", "chat.*:10:0", "chat.*:1.5:3"])
def test_history_spec_refusals_name_the_option(spec):
    with pytest.raises(ConfigError) as raised:
        load(None, {}, {"history": [spec]})
    assert "--history" in str(raised.value)


def test_history_from_the_environment_is_comma_separated():
    assert resolve(["serve"], {"UWS_PY_HISTORY": "chat.*:10:60, feed.*"}).history == ["chat.*:10:60", "feed.*"]


def test_history_tables_in_the_file_beside_a_serve_table(tmp_path):
    path = write_toml(tmp_path, '[serve]\nport = 9000\n\n[[history]]\npattern = "chat.*"\nsize = 50\nttl = 60\n\n'
                                '[[history]]\npattern = "feed.*"\n')
    config = load(path, {}, {})
    assert config.history == ["chat.*:50:60", "feed.*:100:300.0"]
    assert [parse_history(spec) for spec in config.history] == [("chat.*", 50, 60.0), ("feed.*", 100, 300.0)]


def test_history_tables_without_a_serve_table_and_bad_entries(tmp_path):
    assert load(write_toml(tmp_path, '[[history]]\npattern = "a.*"\nsize = 3\n'), {}, {}).history == ["a.*:3:300.0"]
    for bad in ('[[history]]\nsize = 3\n', '[[history]]\npattern = "a"\nsize = "x"\n', '[[history]]\npattern = "a"\nmax = 1\n'):
        with pytest.raises(ConfigError):
            load(write_toml(tmp_path, bad), {}, {})


def test_build_server_registers_the_history_patterns():
    from uws_py.cli import build_server

    server = build_server(load(None, {}, {"history": ["chat.*:7:9"], "history_recover_limit": 20}))
    assert server.engine.history_policy.patterns[0].pattern == "chat.*"
    assert (server.engine.history_policy.patterns[0].size, server.engine.history_policy.patterns[0].ttl) == (7, 9.0)
    assert server.options.history_recover_limit == 20


# -- presence (issue 15) ------------------------------------------------------------------------


def test_presence_options_from_command_line_environment_and_file(tmp_path):
    config = resolve(["serve", "--presence", "room.*:join_leave", "--presence", "quiet.*", "--presence-ttl", "2.5",
                      "--presence-diff-interval", "0.25"])
    assert config.presence == ["room.*:join_leave", "quiet.*"]
    assert (config.presence_ttl, config.presence_diff_interval) == (2.5, 0.25)
    assert resolve(["serve"], {"UWS_PY_PRESENCE": "a.*, b.*:join_leave", "UWS_PY_PRESENCE_TTL": "9"}).presence_ttl == 9.0
    path = write_toml(tmp_path, '[serve]\npresence = ["x.*:join_leave"]\npresence_ttl = 4\n')
    assert (load(path, {}, {}).presence, load(path, {}, {}).presence_ttl) == (["x.*:join_leave"], 4.0)
    defaults = load(None, {}, {})
    assert (defaults.presence, defaults.presence_ttl, defaults.presence_diff_interval) == ([], 30.0, 1.0)


def test_presence_spec_and_timing_refusals_name_the_option():
    assert parse_presence("chat.*:join_leave") == ("chat.*", True)
    assert parse_presence("a:b") == ("a:b", False)
    with pytest.raises(ConfigError, match="--presence"):
        load(None, {}, {"presence": [":join_leave"]})
    with pytest.raises(ConfigError, match="--presence-ttl"):
        load(None, {}, {"presence_ttl": 0.0})
    with pytest.raises(ConfigError, match="PRESENCE_TTL"):
        load(None, {"UWS_PY_PRESENCE_TTL": "soon"}, {})


def test_build_server_registers_the_presence_patterns():
    from uws_py.cli import build_server

    server = build_server(load(None, {}, {"presence": ["room.*:join_leave", "q.*"], "presence_ttl": 3.0}))
    presence = server.engine.presence
    assert [(o.pattern, o.join_leave) for o in presence.policy.patterns] == [("room.*", True), ("q.*", False)]
    assert presence.ttl == 3.0 and server.engine.pubsub.presence is presence


def test_dashboard_token_is_masked_and_must_be_long_enough() -> None:
    shown = load(None, {"UWS_PY_DASHBOARD_TOKEN": "0123456789abcdef-x"}, {}).redacted()
    assert shown["dashboard_token"] == "***" and shown["dashboard_path"] == "/dashboard"
    with pytest.raises(ConfigError, match="--dashboard-token"):
        load(None, {}, {"dashboard_token": "short"})
    with pytest.raises(ConfigError, match="--dashboard-path"):
        load(None, {}, {"dashboard_path": "dashboard"})
    with pytest.raises(ConfigError, match="--report-interval"):
        load(None, {}, {"report_interval": -1})
def test_history_store_goes_with_a_nats_broker_only():
    with pytest.raises(ConfigError, match="history-store"):
        ServeConfig(broker="redis://127.0.0.1:6379/0", history_store="redis://127.0.0.1:6380/0").validate()
    with pytest.raises(ConfigError, match="history-store must be"):
        ServeConfig(broker="nats://127.0.0.1:4222", history_store="nats://127.0.0.1:4223").validate()
    ServeConfig(broker="nats://127.0.0.1:4222", history_store="redis+cluster://127.0.0.1:7000").validate()


# -- connection limits (issue 19, connection storm) ------------------------------------------


def test_connection_limits_from_command_line_environment_and_file(tmp_path):
    config = resolve(["serve", "--max-connections", "5000", "--max-connections-per-ip", "50",
                      "--max-upgrades-per-second", "800", "--retry-after", "7"])
    assert (config.max_connections, config.max_connections_per_ip) == (5000, 50)
    assert (config.max_upgrades_per_second, config.retry_after) == (800, 7)
    assert resolve(["serve"], {"UWS_PY_MAX_CONNECTIONS": "12"}).max_connections == 12
    path = write_toml(tmp_path, "[serve]\nmax_connections = 9\nmax-connections-per-ip = 3\n")
    assert (load(path, {}, {}).max_connections, load(path, {}, {}).max_connections_per_ip) == (9, 3)
    defaults = load(None, {}, {})
    assert (defaults.max_connections, defaults.max_connections_per_ip, defaults.max_upgrades_per_second,
            defaults.retry_after) == (0, 0, 0, 5)


@pytest.mark.parametrize("name, value", [("max_connections", -1), ("max_connections_per_ip", -5),
                                         ("max_upgrades_per_second", -1), ("retry_after", 0)])
def test_connection_limit_out_of_range_names_the_option(name, value):
    with pytest.raises(ConfigError, match="--" + name.replace("_", "-")):
        load(None, {}, {name: value})


def test_build_server_applies_the_connection_limits_and_zero_is_no_limit():
    from uws_py.cli import build_server

    limiter = build_server(load(None, {}, {"max_connections": 10, "max_connections_per_ip": 2,
                                           "max_upgrades_per_second": 100, "retry_after": 2})).limiter
    assert (limiter.max_connections, limiter.max_per_ip, limiter.max_upgrades_per_second) == (10, 2, 100)
    assert limiter.retry_after == 2
    unlimited = build_server(load(None, {}, {})).limiter
    assert (unlimited.max_connections, unlimited.max_per_ip, unlimited.upgrades) == (None, None, None)


def test_backlog_option_its_range_and_the_somaxconn_warning(monkeypatch, caplog):
    from uws_py import cli

    assert resolve(["serve", "--backlog", "4096"]).backlog == 4096
    assert load(None, {}, {}).backlog == 512
    with pytest.raises(ConfigError, match="--backlog"):
        load(None, {}, {"backlog": 0})
    monkeypatch.setattr(cli, "somaxconn", lambda: 1024)
    with caplog.at_level("WARNING", logger="uws_py.cli"):
        cli.check_backlog(1024)
        assert caplog.records == []
        cli.check_backlog(4096)
    assert [r.getMessage() for r in caplog.records] == [
        "--backlog 4096 is capped by the kernel at net.core.somaxconn = 1024"]


# -- max_lifetime -------------------------------------------------------------------------------


def test_max_lifetime_from_the_command_line_and_the_environment_reaches_the_realtime_server():
    from uws_py.cli import REALTIME_OPTIONS, realtime_keywords

    assert resolve(["serve"]).max_lifetime == 0
    config = resolve(["serve", "--max-lifetime", "30"])
    assert config.max_lifetime == 30
    assert resolve(["serve"], {"UWS_PY_MAX_LIFETIME": "45"}).max_lifetime == 45
    assert realtime_keywords(config, REALTIME_OPTIONS)["max_lifetime"] == 30


@pytest.mark.parametrize("value", ["-1", "1000001"])
def test_max_lifetime_out_of_range_is_refused(value):
    with pytest.raises(ConfigError, match="--max-lifetime"):
        resolve(["serve", "--max-lifetime", value])


def test_cli_broker_publish_timeout_reaches_the_redis_brokers():
    from uws_py.cli import REALTIME_OPTIONS, realtime_keywords

    for url in ("redis://127.0.0.1:6379/0", "redis+cluster://127.0.0.1:7000"):
        config = resolve(["serve", "--broker", url, "--broker-publish-timeout", "0.75"])
        assert config.broker_publish_timeout == 0.75
        assert realtime_keywords(config, REALTIME_OPTIONS)["broker"].publish_timeout == 0.75
    environment = resolve(["serve", "--broker", "redis://127.0.0.1:6379/0"], {"UWS_PY_BROKER_PUBLISH_TIMEOUT": "2.5"})
    assert environment.broker_publish_timeout == 2.5
    # Not given: the brokers' own default.
    from uws_py.broker import redis as redis_broker, redis_cluster

    default = resolve(["serve", "--broker", "redis://127.0.0.1:6379/0"])
    assert realtime_keywords(default, REALTIME_OPTIONS)["broker"].publish_timeout == 5.0
    assert default.broker_publish_timeout == redis_broker.PUBLISH_TIMEOUT == redis_cluster.PUBLISH_TIMEOUT


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_cli_broker_publish_timeout_must_be_positive(value):
    with pytest.raises(ConfigError, match="--broker-publish-timeout must be > 0"):
        resolve(["serve", "--broker", "redis://127.0.0.1:6379/0", "--broker-publish-timeout", value])


def test_cli_broker_publish_timeout_goes_with_a_redis_broker_only():
    from uws_py.cli import REALTIME_OPTIONS, realtime_keywords

    for argv in (["serve", "--broker", "nats://127.0.0.1:4222", "--broker-publish-timeout", "1"],
                 ["serve", "--broker-publish-timeout", "1"]):
        with pytest.raises(ConfigError, match="--broker-publish-timeout goes with a redis://"):
            realtime_keywords(resolve(argv), REALTIME_OPTIONS)
    # A NATS broker without the option is built as before.
    nats = resolve(["serve", "--broker", "nats://127.0.0.1:4222"])
    assert realtime_keywords(nats, REALTIME_OPTIONS)["broker"] is not None
