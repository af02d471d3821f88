"""Issue 19 item 1, quick version of bench/scale/run.py: 2,000 JWT subscribers (2 load
generator processes, 127.0.x.y sources) on `uws-py serve --workers 4 --broker redis://...`,
then 3 s of publishes at 10/s through one worker and Redis: every connection subscribed and
still open at the end, every publish delivered to every connection exactly once, in order.
Latency and memory are reported by the bench, not asserted here."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_scale_run", ROOT / "bench" / "scale" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fan_out_to_2000_subscribers_on_4_workers_loses_and_repeats_nothing():
    bench = load_bench()
    args = argparse.Namespace(connections=2000, workers=4, processes=2, sources_per_process=2, rate=10.0,
                              seconds=3.0)
    report = bench.run(args)
    print({k: report[k] for k in ("subscribed", "connect_per_s", "published", "delivered", "lost", "duplicated",
                                   "latency_ms")})
    assert report["subscribed"] == 2000 and report["open_at_end"] == 2000, report
    assert report["published"] >= 25, report  # 3 s at 10/s
    assert report["delivered"] == report["expected_deliveries"] == report["published"] * 2000, report
    assert report["lost"] == 0 and report["duplicated"] == 0, report
    assert all(errors == {"mismatches": 0, "connect_failed": 0, "handshake_failed": 0, "closed_by_server": 0,
                          "protocol": 0, "subscribe_timeout": 0} for errors in report["loadgen_errors"]), report
    # Every worker held some of the connections (the kernel spreads them over the 4).
    assert sorted(w["connections"] > 0 for w in report["worker_stats"].values()) == [True] * 4, report
