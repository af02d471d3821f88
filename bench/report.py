"""The Markdown report: one table per scenario (medians over rounds, every round's value, ratios
against uws-py) and the ratios issue 16 asks for, round by round."""

from __future__ import annotations

import statistics
from typing import Optional

from scenarios import Scenario

REFERENCE = "uws-py"

# Issue 16's goals: (scenario, the row uws-py's RealtimeServer is compared with, the goal, what).
ISSUE_RATIOS = (
    (8, "uWS.js", 1.0, "realtime stack (ECHO handler) vs uWebSockets.js raw echo"),
    (8, "uws-py-app", None, "realtime stack (ECHO handler) vs uws-py raw App echo"),
    (9, "uWS.js", 1.5, "built-in PING vs uWebSockets.js raw echo"),
    (9, "uws-py-app", None, "built-in PING vs uws-py raw App echo"),
    (10, "uws-py-app", 0.9, "PUBLISH fan-out vs raw App app.publish fan-out"),
    (11, "uws-py-app", 0.9, "PUBLISH fan-out at 400/s vs raw App, by server CPU"),
    (12, "uWS.js", 1.5, "built-in SUBSCRIBE/UNSUBSCRIBE vs uWebSockets.js raw echo"),
    (12, "uws-py-app", None, "built-in SUBSCRIBE/UNSUBSCRIBE vs uws-py raw App echo"),
    (13, "uWS.js", 1.5, "built-in PUBLISH (no subscriber) vs uWebSockets.js raw echo"),
    (13, "uws-py-app", None, "built-in PUBLISH (no subscriber) vs uws-py raw App echo"),
    (14, "uWS.js", 1.5, "built-in BATCH of 4 PINGs vs uWebSockets.js raw echo of it, per frame"),
    (14, "uws-py-app", None, "built-in BATCH of 4 PINGs vs uws-py raw App echo of it, per frame"),
)

# Per item of a BATCH: (scenario, its items' own scenario, the row, the goal, what). The
# RealtimeServer's CPU per frame divided by the items against the row's CPU per message echoing
# one item's request (the PING of scenario 9), round by round.
ITEM_RATIOS = (
    (14, 9, "uWS.js", 1.5, "built-in BATCH of 4 PINGs, per PING, vs uWebSockets.js raw echo of one PING (sc 9)"),
)


def _ratio(value: float, reference: float) -> str:
    if not reference:
        return ""
    return f"{value / reference:.2f}×"


def _notes(summary: dict) -> str:
    notes = []
    if summary.get("loadgen_bottleneck"):
        notes.append("loadgen-bound")
    if summary.get("uncompressed_replies"):
        notes.append("negotiated deflate but replied uncompressed")
    other = summary.get("other_cpu_cores")
    if isinstance(other, (int, float)) and other > 0.3:
        notes.append(f"other load {other:.1f} cores")
    if summary.get("status", "ok") != "ok" and summary.get("clean_rounds"):
        notes.append(f"{summary['clean_rounds']}/{summary['rounds']} rounds clean: {summary['status']}")
    return "; ".join(notes)


def _cpu(summary: dict) -> str:
    parts = []
    if isinstance(summary.get("server_cpu_fraction"), (int, float)):
        parts.append(f"{summary['server_cpu_fraction']:.2f}")
    if isinstance(summary.get("loadgen_cpu_fraction"), (int, float)):
        parts.append(f"{summary['loadgen_cpu_fraction']:.2f}")
    return " / ".join(parts)


def _cpu_metric(scenario: Scenario) -> Optional[str]:
    return next((m.key for m in scenario.metrics if "cpu_us_per" in m.key), None)


def _each_round(summary: dict, key: str, fmt: str) -> str:
    values = summary.get("each_round", {}).get(key, [])
    return " · ".join("–" if v is None else fmt.format(v) for v in values)


def _ratios_by_round(ours: list, theirs: list, higher_is_better: bool) -> list[Optional[float]]:
    """Round by round (both measured in the same round, one after the other): ours / theirs for
    throughput, theirs / ours for a cost, so above 1 is always in uws-py's favour."""
    out: list[Optional[float]] = []
    for a, b in zip(ours, theirs):
        if a is None or b is None or not a or not b:
            out.append(None)
        else:
            out.append(a / b if higher_is_better else b / a)
    return out


def _ratio_cells(ratios: list[Optional[float]]) -> tuple[str, str]:
    known = [r for r in ratios if r is not None]
    rounds = " · ".join("–" if r is None else f"{r:.2f}×" for r in ratios)
    return (f"{statistics.median(known):.2f}×" if known else "", rounds)


def render_issue_ratios(scenarios: list[Scenario], summaries: dict[int, dict[str, dict]]) -> list[str]:
    """The ratios of issue 16 that this run has both sides of, by the first metric and by
    server CPU per message, each round's and their median."""
    by_number = {s.number: s for s in scenarios}
    rows = []
    for number, other, goal, what in ISSUE_RATIOS:
        scenario = by_number.get(number)
        table = summaries.get(number, {})
        if scenario is None or REFERENCE not in table or other not in table:
            continue
        primary = scenario.primary
        ours, theirs = table[REFERENCE].get("each_round", {}), table[other].get("each_round", {})
        median, rounds = _ratio_cells(_ratios_by_round(ours.get(primary.key, []), theirs.get(primary.key, []),
                                                       primary.higher_is_better))
        cpu_key = _cpu_metric(scenario)
        cpu_median, cpu_rounds = _ratio_cells(
            _ratios_by_round(ours.get(cpu_key, []), theirs.get(cpu_key, []), False)) if cpu_key else ("", "")
        goal_text = f"≥ {goal:.1f}×" if goal is not None else ""
        rows.append(f"| {number} | {what} | {goal_text} | {median} | {rounds} | {cpu_median} | {cpu_rounds} |")
    for number, single, other, goal, what in ITEM_RATIOS:
        scenario, table, singles = by_number.get(number), summaries.get(number, {}), summaries.get(single, {})
        if scenario is None or single not in by_number or REFERENCE not in table or other not in singles:
            continue
        cpu_key = _cpu_metric(scenario)
        ours = [None if v is None else v / scenario.items
                for v in table[REFERENCE].get("each_round", {}).get(cpu_key, [])]
        theirs = singles[other].get("each_round", {}).get(_cpu_metric(by_number[single]), [])
        cpu_median, cpu_rounds = _ratio_cells(_ratios_by_round(ours, theirs, False))
        goal_text = f"≥ {goal:.1f}×" if goal is not None else ""
        rows.append(f"| {number} | {what} | {goal_text} | | | {cpu_median} | {cpu_rounds} |")
    if not rows:
        return []
    return [
        "## Issue 16's ratios",
        "",
        "uws-py's RealtimeServer against the row named, in each round (the two ran one after the other), "
        "and the median of the rounds. By the first metric (msg/s or deliveries/s: ours / theirs) and by "
        "server CPU per message or delivery (theirs / ours); above 1× is in the RealtimeServer's favour.",
        "",
        "| # | comparison | goal | median | each round | by CPU/msg: median | each round |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]


def render_markdown(info: dict, scenarios: list[Scenario], summaries: dict[int, dict[str, dict]], order: list[str]) -> str:
    lines = [
        "# uws-py benchmark results",
        "",
        f"- date: {info['date']}; mode: {info['mode']}, {info['rounds']} rounds, {info['elapsed_s']} s in all",
        f"- command: `{info['command']}`",
        f"- machine: {info['cpu']}, {info['cores']} cores, Linux {info['kernel']}; "
        f"load average at start {' '.join(info['loadavg_at_start'])}",
        f"- Python {info['python']} (uws-py), {info['baseline_python']} (baselines), Node {info['node']}",
        "- servers: " + "; ".join(f"{name}: {label}" for name, label in info["servers"].items()),
        "",
        "Values are medians over rounds. The ratio column divides each server's first metric by "
        "uws-py's (above 1× is more for throughput, slower for latency, more memory for RSS). "
        "CPU column: server / loadgen busy fraction of one core during the measurement (the loadgen's "
        "summed over its threads). \"each round\" is the first metric of every round in the order run "
        "(– where a round has none: it failed, or a fan-out ramp had no sustained step).",
        "",
    ]
    lines += render_issue_ratios(scenarios, summaries)
    for scenario in scenarios:
        table = summaries[scenario.number]
        lines.append(f"## {scenario.number}. {scenario.title}")
        lines.append("")
        if scenario.kind == "unavailable":
            lines.append(f"_{scenario.unavailable}_")
            lines.append("")
            continue
        primary = scenario.primary
        arrow = "↑" if primary.higher_is_better else "↓"
        header = ["server", *(f"{m.title}{' ' + arrow if m is primary else ''}" for m in scenario.metrics),
                  "each round", "vs uws-py", "CPU srv / lg", "notes"]
        threads = info.get("loadgen_threads", {}).get(scenario.number, 1)
        if threads > 1:
            lines.append(f"Load generator: {threads} threads.")
            lines.append("")
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        reference = table.get(REFERENCE, {}).get(primary.key)
        for name in order:
            if name not in table:
                continue
            summary = table[name]
            if primary.key not in summary:
                status = summary.get("status", "not run")
                lines.append(f"| {name} | " + " | ".join([""] * (len(header) - 2)) + f" {status} |")
                continue
            cells = [name]
            for metric in scenario.metrics:
                value = summary.get(metric.key)
                cells.append("" if value is None else metric.fmt.format(value))
            cells.append(_each_round(summary, primary.key, primary.fmt))
            cells.append(_ratio(summary[primary.key], reference) if reference else "")
            cells.append(_cpu(summary))
            cells.append(_notes(summary))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
