"""Draws bench/results/latest.png from a results JSON: one bar chart per scenario's first metric.

usage: python chart.py RESULTS.json OUT.png   (needs matplotlib)
"""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TITLES = {
    "msgs_per_s": "messages/s (higher is better)",
    "mb_per_s": "MB/s (higher is better)",
    "p99_us": "p99 RTT µs (lower is better)",
    "deliveries_per_s": "deliveries/s (higher is better)",
    "rss_per_conn": "server RSS bytes/connection (lower is better)",
    "step_cpu_us_per_delivery": "server CPU µs/delivery (lower is better)",
}


def main() -> int:
    source, target = sys.argv[1], sys.argv[2]
    document = json.loads(open(source).read())
    panels = []
    for number, scenario in sorted(document["scenarios"].items(), key=lambda item: int(item[0])):
        if not scenario["metrics"]:
            continue
        key = scenario["metrics"][0]
        rows = [(name, s[key]) for name, s in scenario["summary"].items() if isinstance(s.get(key), (int, float))]
        if rows:
            panels.append((number, scenario["title"], key, rows))
    if not panels:
        print("nothing to draw", file=sys.stderr)
        return 1
    columns = 2
    rows_count = (len(panels) + columns - 1) // columns
    figure, axes = plt.subplots(rows_count, columns, figsize=(14, 3.6 * rows_count), squeeze=False)
    for axis in axes.flat[len(panels):]:
        axis.set_visible(False)
    for axis, (number, title, key, rows) in zip(axes.flat, panels):
        names = [name for name, _ in rows]
        values = [value for _, value in rows]
        colors = ["#d62728" if name == "uws-py" else "#7f7f7f" for name in names]
        bars = axis.barh(names, values, color=colors)
        axis.invert_yaxis()
        axis.set_title(f"{number}. {title}", fontsize=9)
        axis.set_xlabel(TITLES.get(key, key), fontsize=8)
        axis.tick_params(labelsize=8)
        axis.bar_label(bars, labels=[f"{v:,.0f}" if v >= 100 else f"{v:,.1f}" for v in values], fontsize=7, padding=2)
        axis.margins(x=0.18)
    system = document["system"]
    figure.suptitle(f"uws-py benchmarks ({system['mode']}, {system['date']}; {system['cpu']}, {system['cores']} cores)", fontsize=11)
    figure.tight_layout()
    figure.savefig(target, dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
