"""The load generator's threads mode and PING payload, and the runner's scenario 9 and 10
servers: that they start, answer and are checked, never how fast (speed is bench/'s business).

The load generator is bench/.build/loadgen, built by the bench's own rule (bench/build_loadgen.sh,
again only when a source under bench/loadgen/ is newer than it), so that the chaos tests' scale and
storm runs reuse the same build instead of compiling their own; every run is a fraction of a
second of load on loopback against a server started here.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import procutil

BENCH = Path(__file__).resolve().parents[3] / "bench"
SHORT = ["--warmup", "0.2", "--duration", "0.4"]


def load_bench_module(name: str, path: Path):
    """A bench script as a module (bench/run.py puts bench/ on sys.path for its own imports)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_runner():
    return load_bench_module("bench_run", BENCH / "run.py")


@pytest.fixture(scope="module")
def loadgen() -> Path:
    return load_bench_module("bench_scale_run", BENCH / "scale" / "run.py").build_loadgen()


@pytest.fixture(scope="module")
def runner(loadgen, tmp_path_factory):
    module = load_runner()
    module.LOADGEN = loadgen
    module.LOGS = tmp_path_factory.mktemp("bench-logs")
    return module


@pytest.fixture(scope="module")
def known_servers(runner):
    return {server.name: server for server in runner.all_servers({"uws-py": "test"})}


@pytest.fixture(scope="module")
def raw_echo(runner, known_servers, tmp_path_factory):
    """uws-py's raw App echo server (bench/servers/uwspy_echo.py), stopped by its own PID."""
    log = tmp_path_factory.mktemp("echo") / "echo.log"
    running = runner.RunningServer(known_servers["uws-py"], "echo", False, log)
    try:
        assert running.wait_ready() is None
        yield running
    finally:
        running.stop()


def run_loadgen(loadgen: Path, *args: str) -> tuple[int, dict]:
    done = subprocess.run([str(loadgen), *args], capture_output=True, text=True, timeout=60)
    return done.returncode, json.loads(done.stdout)


def test_threads_split_the_connections_and_report_each_loop(loadgen, raw_echo):
    status, result = run_loadgen(loadgen, "--port", str(raw_echo.port), "--connections", "7", "--inflight", "2",
                                 "--threads", "3", "--server-pid", str(raw_echo.process.pid), *SHORT)
    assert status == 0 and result["ok"], result
    assert result["threads"] == 3
    assert result["connections_open"] == 7
    assert len(result["threads_cpu_fraction"]) == 3
    assert all(0 < fraction < 1.5 for fraction in result["threads_cpu_fraction"])
    assert result["messages"] > 0 and result["latency_us"]["samples"] == result["messages"]
    assert "server_cpu_us_per_msg" in result


def test_threads_are_refused_where_they_do_not_apply(loadgen):
    for args in (["--mode", "fanout", "--threads", "2"], ["--connections", "2", "--threads", "3"], ["--threads", "0"]):
        done = subprocess.run([str(loadgen), "--port", "9", *args], capture_output=True, text=True, timeout=10)
        assert done.returncode == 2 and "--threads" in done.stderr, (args, done.stderr)


def test_ping_payload_is_echoed_byte_for_byte_by_a_raw_server(loadgen, raw_echo):
    status, result = run_loadgen(loadgen, "--port", str(raw_echo.port), "--connections", "4", "--inflight", "4",
                                 "--payload", "ping", "--threads", "2", *SHORT)
    assert status == 0 and result["ok"], result
    assert result["size"] == len('{"type":"PING","id":1000000000000000}')
    assert result["messages"] > 0


def test_a_pong_check_against_a_raw_echo_counts_every_reply_as_a_mismatch(loadgen, raw_echo):
    status, result = run_loadgen(loadgen, "--port", str(raw_echo.port), "--connections", "2", "--inflight", "2",
                                 "--payload", "ping", "--reply", "pong", *SHORT)
    assert status == 1 and not result["ok"]
    assert result["errors"]["mismatches"] > 0


@pytest.mark.parametrize("payload, reply", [("subscribe", "subscribed"), ("publish", "published"), ("batch", "batch")])
def test_a_built_in_reply_check_against_a_raw_echo_counts_every_reply_as_a_mismatch(loadgen, raw_echo, payload, reply):
    status, result = run_loadgen(loadgen, "--port", str(raw_echo.port), "--connections", "2", "--inflight", "2",
                                 "--payload", payload, "--reply", reply, *SHORT)
    assert status == 1 and not result["ok"]
    # Every reply counted (the measured ones and those of the warm-up) is a mismatch.
    assert result["messages"] > 0 and result["errors"]["mismatches"] >= result["messages"]


@pytest.mark.parametrize("payload", ["subscribe", "publish", "batch"])
def test_built_in_payloads_are_echoed_byte_for_byte_by_a_raw_server(loadgen, raw_echo, payload):
    status, result = run_loadgen(loadgen, "--port", str(raw_echo.port), "--connections", "3", "--inflight", "3",
                                 "--payload", payload, *SHORT)
    assert status == 0 and result["ok"], result
    assert result["messages"] > 0


def test_a_reply_kind_needs_its_payload(loadgen):
    for reply in ("subscribed", "published", "batch"):
        done = subprocess.run([str(loadgen), "--port", "9", "--payload", "ping", "--reply", reply],
                              capture_output=True, text=True, timeout=10)
        assert done.returncode == 2 and f"--reply {reply} needs" in done.stderr, done.stderr


def short(scenario, **loadgen_values: str):
    """``scenario`` with a fraction of its load: the named loadgen arguments replaced."""
    args = list(scenario.loadgen)
    for flag, value in loadgen_values.items():
        flag = "--" + flag.replace("_", "-")
        args[args.index(flag) + 1] = value
    return dataclasses.replace(scenario, loadgen=args)


@pytest.fixture(scope="module")
def scenario_by_number(runner):
    return {scenario.number: scenario for scenario in runner.scenarios(quick=True)}


@pytest.mark.parametrize("name", ["uws-py", "uws-py-app"])
def test_scenario_9_servers_answer_ping(runner, known_servers, scenario_by_number, name):
    scenario = short(scenario_by_number[9], connections="4", inflight="2", warmup="0.2", duration="0.5")
    result = runner.measure(known_servers[name], scenario, 0, threads=2)
    assert result["status"] == "ok", result
    assert result["threads"] == 2 and result["messages"] > 0


@pytest.mark.parametrize("number", [12, 13, 14])
@pytest.mark.parametrize("name", ["uws-py", "uws-py-app"])
def test_scenarios_12_to_14_servers_answer_their_built_in(runner, known_servers, scenario_by_number, name, number):
    """RealtimeServer's SUBSCRIBED/UNSUBSCRIBED, PUBLISHED and BATCH replies (checked by the
    load generator's --reply), the raw App's echo of the same requests."""
    scenario = short(scenario_by_number[number], connections="4", inflight="2", warmup="0.2", duration="0.5")
    result = runner.measure(known_servers[name], scenario, 0)
    assert result["status"] == "ok", result
    assert result["messages"] > 0 and result["errors"]["mismatches"] == 0


@pytest.mark.parametrize("name", ["uws-py", "uws-py-app"])
def test_scenario_10_servers_fan_a_publish_out(runner, known_servers, scenario_by_number, name):
    scenario = short(scenario_by_number[10], connections="20", rate_start="50", rate_max="100", step="0.3")
    result = runner.measure(known_servers[name], scenario, 0)
    assert result["status"] == "ok", result
    assert result["subscribers_open"] == 20
    # The server's CPU comes in clock ticks: a short, slow step may show none, so only its presence.
    assert result["best"]["deliveries"] > 0 and "server_cpu_us_per_msg" in result["best"]


def test_scenario_11_runs_one_fixed_rate_step_and_reads_its_cost(runner, known_servers, scenario_by_number):
    scenario = short(scenario_by_number[11], connections="20", rate_start="50", rate_max="50", step="0.3")
    result = runner.measure(known_servers["uws-py"], scenario, 0)
    assert result["status"] == "ok", result
    assert [step["rate"] for step in result["steps"]] in ([50], [50, 50])
    cost, deliveries, delivered = (metric.read(result) for metric in scenario.metrics)
    assert cost is not None and cost >= 0 and deliveries > 0 and 0 < delivered <= 1


def test_scenario_10_is_not_available_without_a_realtime_fan_out_server(runner, known_servers, scenario_by_number):
    result = runner.measure(known_servers["uWS.js"], scenario_by_number[10], 0)
    assert result["status"].startswith("not available")


def test_the_report_shows_every_round_and_the_issue_ratios(runner, scenario_by_number):
    from report import render_markdown

    scenario = scenario_by_number[9]
    rounds = {"uws-py": [300.0, 200.0, 100.0], "uWS.js": [100.0, 200.0, 400.0]}
    summaries = {9: {name: {"status": "ok", "msgs_per_s": sorted(values)[1],
                            "each_round": {"msgs_per_s": values, "server_cpu_us_per_msg": [1.0, 1.0, 2.0]}}
                     for name, values in rounds.items()}}
    info = {"date": "d", "mode": "quick", "rounds": 3, "elapsed_s": 1, "command": "c", "cpu": "x", "cores": 2,
            "kernel": "k", "loadavg_at_start": ["0", "0", "0"], "python": "3", "baseline_python": "3", "node": "20",
            "servers": {}}
    text = render_markdown(info, [scenario], summaries, ["uws-py", "uWS.js"])
    assert "300 · 200 · 100" in text and "100 · 200 · 400" in text
    ratio_row = next(line for line in text.splitlines() if line.startswith("| 9 | built-in PING vs uWebSockets.js"))
    assert "3.00× · 1.00× · 0.25×" in ratio_row and "| 1.00× |" in ratio_row
    assert sys.modules["report"].ISSUE_RATIOS


def test_the_report_gives_a_batch_per_frame_and_per_item(runner, scenario_by_number):
    from report import render_issue_ratios

    def summary(cpu: list[float]) -> dict:
        return {"status": "ok", "each_round": {"msgs_per_s": [1.0] * len(cpu), "server_cpu_us_per_msg": cpu}}

    summaries = {9: {"uWS.js": summary([1.0, 2.0])},
                 14: {"uws-py": summary([2.0, 4.0]), "uWS.js": summary([4.0, 4.0])}}
    rows = render_issue_ratios([scenario_by_number[9], scenario_by_number[14]], summaries)
    frame = next(line for line in rows if line.startswith("| 14 | built-in BATCH of 4 PINGs vs uWebSockets.js"))
    item = next(line for line in rows if line.startswith("| 14 | built-in BATCH of 4 PINGs, per PING"))
    assert "2.00× · 1.00×" in frame
    # Per item: 0.5 and 1.0 µs per PING against uWS.js's 1.0 and 2.0 µs per PING echoed.
    assert "2.00× · 2.00×" in item and "| 2.00× |" in item


@pytest.fixture(scope="module")
def batch_reply_server():
    """start(how): batch_reply_server.py (beside this file) answering `how`, on its port; every
    one started is stopped by its PID at the end."""
    started: list = []

    def start(how: str) -> int:
        port = procutil.free_port()
        # The uws_py this test imports (the installed one, or PYTHONPATH's), as the bench servers.
        process = procutil.Process([sys.executable, str(Path(__file__).with_name("batch_reply_server.py")), str(port), how])
        started.append(process)
        process.wait_for_lines(re.compile(r"^listening \d+"))
        return port

    yield start
    for process in started:
        process.stop()


@pytest.mark.parametrize("how", ["item-id", "frame-id", "no-time", "extra-byte"])
def test_the_batch_reply_check_counts_a_reply_wrong_in_one_place(loadgen, batch_reply_server, how):
    """--reply batch compares the whole reply: one PONG's id, the frame's id, a missing time,
    one byte too many each make every reply a mismatch; the same reply right makes none."""
    status, result = run_loadgen(loadgen, "--port", str(batch_reply_server("right")), "--connections", "2", "--inflight", "2",
                                 "--payload", "batch", "--reply", "batch", *SHORT)
    assert status == 0 and result["ok"] and result["messages"] > 0, result
    status, result = run_loadgen(loadgen, "--port", str(batch_reply_server(how)), "--connections", "2", "--inflight", "2",
                                 "--payload", "batch", "--reply", "batch", *SHORT)
    assert status == 1 and not result["ok"]
    assert result["messages"] > 0 and result["errors"]["mismatches"] >= result["messages"], result
