"""Runs the benchmark scenarios against uws-py and the baseline servers.

usage: python bench/run.py [--quick] [--only NAME,...] [--scenarios 1,2,...] [--rounds N] [--threads N]

Each (scenario, server) pair gets a fresh server process on a free loopback port and one run of
bench/.build/loadgen against it. Servers are interleaved within every round, and their order
rotates from round to round, so that drift of the machine hits everyone alike; the report gives
medians over rounds, every round's value, ratios against uws-py and the ratios issue 16 asks
for, round by round. Writes bench/results/latest.md, a timestamped
JSON file and bench/results/latest.png.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import render_markdown  # noqa: E402
from scenarios import Scenario, scenarios  # noqa: E402
from servers import (  # noqa: E402
    APP_COMPANION,
    BASELINE_PYTHON,
    BENCH,
    DEFAULT_EXCLUDED,
    UNAVAILABLE_EXIT,
    Server,
    all_servers,
    server_env,
)

LOADGEN = BENCH / ".build" / "loadgen"
RESULTS = BENCH / "results"
LOGS = BENCH / ".build" / "logs"
START_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class RunningServer:
    """A server process started for one measurement; stopped by its own PID only."""

    def __init__(self, server: Server, kind: str, deflate: bool, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.process = subprocess.Popen(
            server.command(kind, self.port, deflate),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=server_env(server),
            preexec_fn=raise_fd_limit,
        )

    def wait_ready(self) -> Optional[str]:
        """None once the server printed "listening", else why it is not available or failed."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            if "listening" in text:
                return None
            status = self.process.poll()
            if status is not None:
                if status == UNAVAILABLE_EXIT:
                    line = next((l for l in text.splitlines() if l.startswith("unavailable")), "unavailable")
                    return "not available: " + line.removeprefix("unavailable: ")
                return f"failed: exited with {status}: {text.strip()[-300:]}"
            time.sleep(0.05)
        return f"failed: no 'listening' within {START_TIMEOUT:.0f} s"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def loadgen_threads(scenario: Scenario, override: Optional[int]) -> int:
    """The load generator threads for ``scenario``: --threads, else the scenario's own count;
    1 for the modes that have no threads, never more than the connections."""
    if not scenario.threaded:
        return 1
    return max(1, min(override or scenario.threads, scenario.connections))


def measure(server: Server, scenario: Scenario, round_number: int, threads: int = 1) -> dict:
    """One loadgen run against a fresh server; the loadgen's JSON plus status fields."""
    kind = {"fanout": "pubsub", "realtime": "realtime", "realtime_fanout": "realtime_fanout"}.get(scenario.kind, "echo")
    if kind == "realtime_fanout" and not server.realtime_fanout:
        return {"status": "not available: no server of the realtime fan-out protocol"}
    LOGS.mkdir(parents=True, exist_ok=True)
    log_path = LOGS / f"{server.name}-s{scenario.number}-r{round_number}.log"
    running = RunningServer(server, kind, scenario.deflate, log_path)
    try:
        problem = running.wait_ready()
        if problem:
            return {"status": problem}
        mode = {"echo": "echo", "fanout": "fanout", "idle": "idle", "realtime": "echo",
                "realtime_fanout": "fanout"}[scenario.kind]
        command = [str(LOADGEN), "--port", str(running.port), "--mode", mode,
                   "--server-pid", str(running.process.pid), *scenario.loadgen]
        if threads > 1:
            command += ["--threads", str(threads)]
        if kind == "realtime" and server.speaks_realtime:
            # The realtime server prints a token for the load generator and greets each client.
            token = next((line.split()[1] for line in log_path.read_text().splitlines() if line.startswith("token ")), "")
            command += ["--path", f"/realtime?token={token}", "--skip-first", "1"]
        if kind in ("realtime", "realtime_fanout") and server.speaks_realtime:
            command += scenario.realtime_loadgen
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            return {"status": "failed: loadgen timed out"}
        try:
            result = json.loads(done.stdout)
        except json.JSONDecodeError:
            return {"status": f"failed: loadgen said {done.stderr.strip()[-300:] or done.stdout[-300:]!r}"}
        if running.process.poll() is not None:
            result["status"] = f"failed: server exited with {running.process.returncode} during the run"
        elif scenario.deflate and not result.get("deflate_negotiated"):
            result["status"] = "not available: permessage-deflate was not negotiated"
        elif scenario.deflate and result.get("compressed_messages_received") == 0:
            result["status"] = "ok"
            result["uncompressed_replies"] = True
        elif not result.get("ok"):
            errors = {k: v for k, v in result.get("errors", {}).items() if v}
            result["status"] = f"errors: {errors}"
        else:
            result["status"] = "ok"
        return result
    finally:
        running.stop()


def system_info(servers: list[Server]) -> dict:
    def first_line(command: list[str]) -> str:
        try:
            return subprocess.run(command, capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"

    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "baseline_python": first_line([str(BASELINE_PYTHON), "--version"]) if BASELINE_PYTHON.exists() else "missing",
        "node": first_line(["node", "--version"]),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
        "servers": {s.name: s.label for s in servers},
    }


def baseline_versions() -> dict[str, str]:
    versions: dict[str, str] = {}
    try:
        from importlib.metadata import version

        versions["uws-py"] = version("uws-py")
    except Exception:
        versions["uws-py"] = "?"
    if BASELINE_PYTHON.exists():
        script = (
            "import json\nfrom importlib.metadata import version, PackageNotFoundError\nout={}\n"
            "for n in ('websockets','socketify','picows','uvloop','aiohttp','matplotlib'):\n"
            "    try: out[n]=version(n)\n    except PackageNotFoundError: pass\nprint(json.dumps(out))"
        )
        done = subprocess.run([str(BASELINE_PYTHON), "-c", script], capture_output=True, text=True)
        if done.returncode == 0:
            versions.update(json.loads(done.stdout))
    return versions


def summarize(runs: list[dict], scenario: Scenario) -> dict:
    """Median of each metric over the rounds that ran cleanly; the worst status otherwise."""
    good = [r for r in runs if r.get("status") == "ok"]
    summary: dict = {"rounds": len(runs), "clean_rounds": len(good)}
    if not good:
        summary["status"] = runs[0]["status"] if runs else "not run"
        return summary
    summary["status"] = "ok" if len(good) == len(runs) else next(r["status"] for r in runs if r["status"] != "ok")
    for metric in scenario.metrics:
        values = [v for v in (metric.read(r) for r in good) if v is not None]
        if values:
            summary[metric.key] = statistics.median(values)
        # Every round's value in round order (None for a round that failed), for the report.
        summary.setdefault("each_round", {})[metric.key] = [
            metric.read(r) if r.get("status") == "ok" else None for r in runs]
    costs = [r.get("best", r) for r in good]
    for key in ("loadgen_cpu_fraction", "server_cpu_fraction", "other_cpu_cores"):
        values = [c[key] for c in costs if isinstance(c.get(key), (int, float))]
        if values:
            summary[key] = statistics.median(values)
    summary["loadgen_bottleneck"] = any(c.get("loadgen_bottleneck") for c in costs)
    summary["uncompressed_replies"] = any(r.get("uncompressed_replies") for r in good)
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short measurements (a few minutes in all)")
    parser.add_argument("--only", help="comma-separated server names")
    parser.add_argument("--scenarios", help="comma-separated scenario numbers")
    parser.add_argument("--rounds", type=int, help="rounds per scenario (default 3)")
    parser.add_argument("--threads", type=int,
                        help="load generator threads in every request/reply scenario (default: each scenario's own)")
    args = parser.parse_args()

    if not LOADGEN.exists():
        print("building the load generator", file=sys.stderr)
        subprocess.run(["bash", str(BENCH / "build_loadgen.sh")], check=True)
    raise_fd_limit()

    versions = baseline_versions()
    known = all_servers(versions)
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = set(wanted) - {s.name for s in known}
        if unknown:
            parser.error(f"unknown servers {sorted(unknown)}; known: {', '.join(s.name for s in known)}")
        if "uws-py" in wanted and APP_COMPANION not in wanted:
            wanted.append(APP_COMPANION)
        chosen = [s for s in known if s.name in wanted]
    else:
        shim_works = not next(s for s in known if s.name == "uWS.js").missing
        chosen = [s for s in known if not (shim_works and s.name in DEFAULT_EXCLUDED)]
    all_scenarios = scenarios(args.quick)
    if args.scenarios:
        numbers = {int(n) for n in args.scenarios.split(",")}
        all_scenarios = [s for s in all_scenarios if s.number in numbers]
    rounds = args.rounds or 3
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be at least 1")

    runnable = [s for s in chosen if not s.missing]
    info = system_info(chosen)
    runs: dict[int, dict[str, list[dict]]] = {
        s.number: {srv.name: [] for srv in runnable if srv.runs(s.kind)} for s in all_scenarios}
    started = time.monotonic()
    for round_number in range(rounds):
        for scenario in all_scenarios:
            if scenario.kind == "unavailable":
                continue
            here = [s for s in runnable if s.runs(scenario.kind)]
            shift = round_number % max(1, len(here))
            threads = loadgen_threads(scenario, args.threads)
            for server in here[shift:] + here[:shift]:
                result = measure(server, scenario, round_number, threads)
                runs[scenario.number][server.name].append(result)
                print(f"[{time.monotonic() - started:6.0f} s] round {round_number + 1}/{rounds} "
                      f"scenario {scenario.number} {server.name}: {result['status']}", file=sys.stderr, flush=True)

    summaries: dict[int, dict[str, dict]] = {}
    for scenario in all_scenarios:
        table: dict[str, dict] = {}
        for server in chosen:
            if not server.runs(scenario.kind):
                continue
            if scenario.kind == "unavailable":
                table[server.name] = {"status": scenario.unavailable}
            elif server.missing:
                table[server.name] = {"status": f"skipped: {server.missing}"}
            else:
                table[server.name] = summarize(runs[scenario.number][server.name], scenario)
        summaries[scenario.number] = table
    info["elapsed_s"] = round(time.monotonic() - started)
    info["mode"] = "quick" if args.quick else "full"
    info["rounds"] = rounds
    info["loadgen_threads"] = {s.number: loadgen_threads(s, args.threads) for s in all_scenarios}
    info["command"] = "python bench/run.py " + " ".join(sys.argv[1:])

    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    document = {
        "system": info,
        "scenarios": {
            s.number: {"title": s.title, "metrics": [m.key for m in s.metrics], "summary": summaries[s.number],
                       "runs": runs.get(s.number, {})}
            for s in all_scenarios
        },
    }
    json_path = RESULTS / f"{stamp}.json"
    json_path.write_text(json.dumps(document, indent=1))
    markdown = render_markdown(info, all_scenarios, summaries, [s.name for s in chosen])
    (RESULTS / "latest.md").write_text(markdown)
    print(markdown)
    print(f"wrote {json_path} and {RESULTS / 'latest.md'}", file=sys.stderr)
    draw_chart(json_path)
    return 0


def draw_chart(json_path: Path) -> None:
    """The chart needs matplotlib, which lives in the baselines venv (or in this interpreter)."""
    chart = BENCH / "chart.py"
    png = RESULTS / "latest.png"
    python = sys.executable if importlib.util.find_spec("matplotlib") is not None else str(BASELINE_PYTHON)
    done = subprocess.run([python, str(chart), str(json_path), str(png)], capture_output=True, text=True)
    if done.returncode == 0:
        print(f"wrote {png}", file=sys.stderr)
    else:
        print(f"no chart: {done.stderr.strip()[-300:]}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
