"""Scale (issue 19 item 1): N concurrent realtime connections (JWT, each subscribed to one
topic) against `uws-py serve --workers 4 --broker redis://...`, from several load generator
processes (bench/loadgen, `--mode subscribe`) on 127.0.x.y source addresses; then a fan-out to
all of them at 10 publishes/s (`--mode publish`, another process, through a worker and Redis).
Reports RSS per connection per worker, the connect rate, the delivery latency p50/p99 and the
deliveries lost and duplicated; writes bench/results/scale-<stamp>.json and .md. Exits 1 when
a delivery was lost or duplicated, a subscriber was not connected, or a connection dropped.
The quick version (2,000 subscribers, 3 s of publishes, about 30 s) is
tests/integration/chaos/test_scale_quick.py, in `.ci/run`.

usage: python bench/scale/run.py [--connections 60000] [--workers 4] [--processes 6]
           [--sources-per-process 4] [--rate 10] [--seconds 30] [--label TEXT] [--no-write]

Run from the repository root with the package importable (PYTHONPATH=python); builds
bench/.build/loadgen when it is missing or older than its source. bench/scale/README.md says
what each number means.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.procutil import LISTENING, RedisServer, UwsServer, children_of  # noqa: E402
from tests.support.storm import SECRET, _cpu_seconds, make_token  # noqa: E402
from tests.support.zero_loss import wait_for_brokers  # noqa: E402

RESULTS = ROOT / "bench" / "results"
LOADGEN = ROOT / "bench" / ".build" / "loadgen"
TOPIC = "scale.all"
SUBSCRIBED = re.compile(r"subscribed (\d+)")


def build_loadgen() -> Path:
    sources = list((ROOT / "bench" / "loadgen").glob("*"))
    if not LOADGEN.exists() or LOADGEN.stat().st_mtime < max(p.stat().st_mtime for p in sources):
        subprocess.run(["bash", str(ROOT / "bench" / "build_loadgen.sh")], check=True, timeout=300)
    return LOADGEN


def proc_stats(pid: int) -> dict:
    """RSS (KiB) and open descriptors of pid."""
    with open(f"/proc/{pid}/status") as handle:
        rss = next(int(line.split()[1]) for line in handle if line.startswith("VmRSS:"))
    return {"rss_kib": rss, "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def wait_subscribed(process: subprocess.Popen, stderr, timeout: float) -> int:
    """The count a subscribe loadgen reports on stderr once its SUBSCRIBEs are answered."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stderr.seek(0)
        match = SUBSCRIBED.search(stderr.read())
        if match:
            return int(match.group(1))
        if process.poll() is not None:
            stderr.seek(0)
            raise AssertionError(f"loadgen pid {process.pid} exited {process.returncode}: {stderr.read()[-2000:]}")
        time.sleep(0.2)
    raise AssertionError(f"loadgen pid {process.pid} not subscribed within {timeout} s")


def percentile_of(values: list, fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run(args: argparse.Namespace) -> dict:
    loadgen = build_loadgen()
    env = {k: v for k, v in os.environ.items() if not k.startswith("UWS_PY_")}
    redis = RedisServer().start()
    hub = None
    subscribers: list = []
    try:
        hub = UwsServer("--workers", str(args.workers), "--broker", redis.url, "--jwt-secret", SECRET,
                        "--rate-limit", "off", "--no-access-log", "--log-level", "warning", "--idle-timeout", "0",
                        "--backlog", "4096", env=env)
        hub.wait_for_lines(LISTENING, args.workers, 30.0)
        wait_for_brokers(hub, args.workers, 30.0)
        workers = children_of(hub.pid)
        time.sleep(1.0)
        baseline = {pid: proc_stats(pid) for pid in workers}
        token = make_token("scale", ttl=7200)
        per_process = [args.connections // args.processes + (1 if n < args.connections % args.processes else 0)
                       for n in range(args.processes)]
        started = time.monotonic()
        for n, count in enumerate(per_process):
            sources = ",".join(f"127.0.{20 + n}.{10 + s}" for s in range(args.sources_per_process))
            stderr = tempfile.TemporaryFile(mode="w+")
            process = subprocess.Popen(
                [str(loadgen), "--mode", "subscribe", "--port", str(hub.port), "--path", "/realtime", "--connections", str(count),
                 "--topic", TOPIC, "--sources", sources, "--hold", "900", "--connect-concurrency", "128",
                 "--publish-size", "64", "--header", f"Authorization: Bearer {token}"],
                stdout=subprocess.PIPE, stderr=stderr, text=True)
            subscribers.append((process, stderr))
        subscribed = [wait_subscribed(p, e, 900.0) for p, e in subscribers]
        connect_s = time.monotonic() - started
        time.sleep(2.0)
        loaded = {pid: proc_stats(pid) for pid in workers}
        fanout_started = time.monotonic()
        cpu_before = {pid: _cpu_seconds(pid) for pid in workers}
        loadgen_cpu_before = sum(_cpu_seconds(p.pid) for p, _ in subscribers)
        publisher = subprocess.run(
            [str(loadgen), "--mode", "publish", "--port", str(hub.port), "--path", "/realtime", "--connections", "1", "--topic", TOPIC,
             "--rate-start", str(args.rate), "--duration", str(args.seconds), "--publish-size", "64",
             "--header", f"Authorization: Bearer {token}"],
            capture_output=True, text=True, timeout=args.seconds + 60)
        published = json.loads(publisher.stdout.strip().splitlines()[-1])
        time.sleep(5.0)  # the last deliveries
        fanout = {"seconds": round(time.monotonic() - fanout_started, 1),
                  "worker_cpu_s": {str(pid): round(_cpu_seconds(pid) - cpu_before[pid], 1) for pid in workers},
                  "subscriber_loadgens_cpu_s": round(sum(_cpu_seconds(p.pid) for p, _ in subscribers)
                                                     - loadgen_cpu_before, 1),
                  "load_average": os.getloadavg()}
        results = []
        for process, stderr in subscribers:
            process.send_signal(signal.SIGTERM)
            out, _ = process.communicate(timeout=60)
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for process, _ in subscribers:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        if hub is not None:
            hub.stop()
        redis.cleanup()
    report = summarize(args, baseline, loaded, subscribed, connect_s, published, results)
    report["fanout_cpu"] = fanout
    return report


def summarize(args, baseline, loaded, subscribed, connect_s, published, results) -> dict:
    total_subscribed = sum(r.get("subscribed", 0) for r in results)
    count = int(published.get("published", 0))
    lost = duplicated = 0
    for r in results:
        by_seq = r.get("by_seq", [])
        for seq in range(count):
            got = by_seq[seq] if seq < len(by_seq) else 0
            lost += max(0, r["subscribed"] - got)
            duplicated += max(0, got - r["subscribed"])
        duplicated += r.get("duplicates", 0)
    workers = {}
    for pid, after in loaded.items():
        before = baseline[pid]
        connections = after["fds"] - before["fds"]
        workers[str(pid)] = {"connections": connections, "rss_mib": round(after["rss_kib"] / 1024, 1),
                             "baseline_rss_mib": round(before["rss_kib"] / 1024, 1),
                             "rss_kib_per_connection": round((after["rss_kib"] - before["rss_kib"]) / connections, 2)
                             if connections > 0 else None}
    return {
        "connections": args.connections, "workers": args.workers, "processes": args.processes,
        "subscribed": total_subscribed, "connect_s": round(connect_s, 1),
        "connect_per_s": round(total_subscribed / connect_s, 1) if connect_s else None,
        "worker_stats": workers,
        "published": count, "rate": args.rate, "expected_deliveries": count * total_subscribed,
        "delivered": sum(sum(r.get("by_seq", [])[:count]) for r in results),
        "lost": lost, "duplicated": duplicated,
        "latency_ms": {"p50_max_over_processes": max(r["latency_us"]["p50"] for r in results) / 1000,
                       "p99_max_over_processes": max(r["latency_us"]["p99"] for r in results) / 1000,
                       "max": max(r["latency_us"]["max"] for r in results) / 1000},
        "open_at_end": sum(r.get("open_at_end", 0) for r in results),
        "loadgen_errors": [r.get("errors") for r in results],
        "per_process": [{k: r.get(k) for k in ("subscribers", "opened", "subscribed", "connect_s", "connect_per_s",
                                              "open_at_end", "duplicates", "latency_us")} for r in results],
    }


def markdown(report: dict) -> str:
    lines = [f"# Scale {report['stamp']}" + (f" ({report['label']})" if report["label"] else ""), "",
             f"`{report['command']}`", "",
             f"{report['subscribed']} of {report['connections']} connections subscribed to `{TOPIC}` "
             f"(JWT) on {report['workers']} workers in {report['connect_s']} s ({report['connect_per_s']}/s), "
             f"from {report['processes']} load generator processes.", "",
             "| worker | connections | RSS MiB | baseline MiB | KiB per connection |", "|---|---|---|---|---|"]
    for pid, w in report["worker_stats"].items():
        lines.append(f"| {pid} | {w['connections']} | {w['rss_mib']} | {w['baseline_rss_mib']} | "
                     f"{w['rss_kib_per_connection']} |")
    lat = report["latency_ms"]
    lines += ["", f"Fan-out: {report['published']} publishes at {report['rate']}/s to every connection: "
              f"{report['delivered']} of {report['expected_deliveries']} deliveries, **lost {report['lost']}**, "
              f"duplicated {report['duplicated']}; latency p50 {lat['p50_max_over_processes']} ms, p99 "
              f"{lat['p99_max_over_processes']} ms (the highest of the load generator processes), max {lat['max']} ms; "
              f"connections open at the end: {report['open_at_end']}.", "",
              f"CPU over the {report['fanout_cpu']['seconds']} s of the fan-out (and its 5 s drain): workers "
              + ", ".join(f"{v} s" for v in report["fanout_cpu"]["worker_cpu_s"].values())
              + f"; subscriber load generators {report['fanout_cpu']['subscriber_loadgens_cpu_s']} s in all; "
              f"load average {', '.join(f'{x:.1f}' for x in report['fanout_cpu']['load_average'])}.", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=60_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--processes", type=int, default=6, help="load generator processes (each < 20,000 fds)")
    parser.add_argument("--sources-per-process", type=int, default=4)
    parser.add_argument("--rate", type=float, default=10.0, help="publishes per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds of publishing")
    parser.add_argument("--label", default="")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    report = run(args)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    report.update(stamp=stamp, label=args.label, command="python bench/scale/run.py " + " ".join(sys.argv[1:]),
                  machine={"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()})
    problems = []
    if report["lost"] or report["duplicated"]:
        problems.append(f"lost {report['lost']}, duplicated {report['duplicated']}")
    if report["subscribed"] != report["connections"] or report["open_at_end"] != report["subscribed"]:
        problems.append(f"subscribed {report['subscribed']}, open at the end {report['open_at_end']}")
    report["failures"] = problems
    text = markdown(report)
    print(text)
    if problems:
        print("FAILED: " + "; ".join(problems))
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"scale-{stamp}.json").write_text(json.dumps(report, indent=1) + "\n")
        (RESULTS / f"scale-{stamp}.md").write_text(text)
        print(f"wrote bench/results/scale-{stamp}.json and .md")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
