"""The Markdown report: one table per scenario, medians over rounds and ratios against uws-py."""

from __future__ import annotations

from scenarios import Scenario

REFERENCE = "uws-py"


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
        "CPU column: server / loadgen busy fraction of one core during the measurement.",
        "",
    ]
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
                  "vs uws-py", "CPU srv / lg", "notes"]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        reference = table.get(REFERENCE, {}).get(primary.key)
        for name in order:
            summary = table.get(name, {})
            if primary.key not in summary:
                status = summary.get("status", "not run")
                lines.append(f"| {name} | " + " | ".join([""] * (len(header) - 2)) + f" {status} |")
                continue
            cells = [name]
            for metric in scenario.metrics:
                value = summary.get(metric.key)
                cells.append("" if value is None else metric.fmt.format(value))
            cells.append(_ratio(summary[primary.key], reference) if reference else "")
            cells.append(_cpu(summary))
            cells.append(_notes(summary))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
