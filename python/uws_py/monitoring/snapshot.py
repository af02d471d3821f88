"""Metric snapshots as plain data, and their merge: what one worker's registry holds, in a
form that crosses a socket or sits in a file, summed into the whole server's families.

A snapshot is a list of families ``{"name", "help", "type", "samples": [[name, labels, value]]}``.
No I/O here; :mod:`.cluster` moves snapshots between processes.
"""

from __future__ import annotations

from typing import Any, Iterable

from prometheus_client.metrics_core import Metric

Family = dict[str, Any]

# Families whose samples only grow while a process lives: summed across workers, and kept for
# a worker that died (its last persisted values) so that the server's totals never go back.
CUMULATIVE_TYPES = frozenset({"counter", "histogram", "summary"})

# Gauges that are not summed across workers: the server value is the smallest one (the broker
# is "connected" only if every worker's connection is up).
MIN_GAUGES = frozenset({"uws_broker_connected"})

# The per-worker families (a ``worker`` label, the worker's index): name -> (source family,
# help). Only these carry the label; every other family is the whole server's value, so that a
# query reads the same with one worker or many.
PER_WORKER = {
    "uws_worker_connections": ("uws_connections", "Open WebSocket connections of one worker"),
    "uws_worker_messages_received": ("uws_messages_received", "WebSocket messages received by one worker"),
    "uws_worker_messages_sent": ("uws_messages_sent", "WebSocket messages sent by one worker"),
}


def take(registry: Any) -> list[Family]:
    """The families a prometheus-client registry collects now, as plain data.

    Args:
        registry: a ``CollectorRegistry`` (or anything with ``collect()``).
    """
    families = []
    for metric in registry.collect():
        families.append({
            "name": metric.name,
            "help": metric.documentation,
            "type": metric.type,
            "samples": [[s.name, dict(s.labels), float(s.value)] for s in metric.samples
                        if not s.name.endswith("_created")],
        })
    return families


def cumulative(families: Iterable[Family]) -> list[Family]:
    """Only the counter-like families of ``families`` (what outlives a worker)."""
    return [f for f in families if f["type"] in CUMULATIVE_TYPES]


def merge(snapshots: Iterable[Iterable[Family]]) -> list[Family]:
    """One snapshot of the whole server: samples with the same name and labels summed (the
    gauges of :data:`MIN_GAUGES` take the smallest value). Families keep the order they were
    first seen in; samples too.

    Args:
        snapshots: the snapshots of every worker (and of those that died).
    """
    merged: dict[str, Family] = {}
    values: dict[str, dict[tuple, list[Any]]] = {}
    for families in snapshots:
        for family in families:
            name = family["name"]
            if name not in merged:
                merged[name] = {"name": name, "help": family["help"], "type": family["type"], "samples": []}
                values[name] = {}
            samples = values[name]
            smallest = name in MIN_GAUGES
            for sample_name, labels, value in family["samples"]:
                key = (sample_name, tuple(sorted(labels.items())))
                entry = samples.get(key)
                if entry is None:
                    samples[key] = [sample_name, dict(labels), value]
                elif smallest:
                    entry[2] = min(entry[2], value)
                else:
                    entry[2] += value
    for name, family in merged.items():
        family["samples"] = list(values[name].values())
    return list(merged.values())


def sample_value(families: Iterable[Family], sample_name: str, **labels: str) -> float:
    """The value of one sample (0 when absent), e.g. ``sample_value(f, "uws_dropped_total")``."""
    for family in families:
        for name, sample_labels, value in family["samples"]:
            if name == sample_name and sample_labels == labels:
                return float(value)
    return 0.0


def per_worker(workers: dict[int, list[Family]]) -> list[Family]:
    """The :data:`PER_WORKER` families with a ``worker`` label.

    Args:
        workers: worker index -> that worker's snapshot (its live values, plus what its dead
            predecessors left, for the counters).
    """
    out = []
    for name, (source, help_text) in PER_WORKER.items():
        family: Family = {"name": name, "help": help_text, "type": "", "samples": []}
        for index in sorted(workers):
            for source_family in workers[index]:
                if source_family["name"] != source:
                    continue
                family["type"] = source_family["type"]
                for sample_name, labels, value in source_family["samples"]:
                    suffix = sample_name[len(source):]
                    family["samples"].append([name + suffix, {**labels, "worker": str(index)}, value])
        if family["type"]:
            out.append(family)
    return out


def gauge(name: str, help_text: str, samples: Iterable[tuple[dict[str, str], float]]) -> Family:
    """A gauge family from ``(labels, value)`` pairs."""
    return {"name": name, "help": help_text, "type": "gauge",
            "samples": [[name, dict(labels), float(value)] for labels, value in samples]}


def counter(name: str, help_text: str, samples: Iterable[tuple[dict[str, str], float]]) -> Family:
    """A counter family from ``(labels, value)`` pairs (sample names get ``_total``)."""
    return {"name": name, "help": help_text, "type": "counter",
            "samples": [[name + "_total", dict(labels), float(value)] for labels, value in samples]}


class SnapshotCollector:
    """A prometheus-client collector yielding fixed families (for ``generate_latest``)."""

    def __init__(self, families: Iterable[Family]) -> None:
        self.families = list(families)

    def collect(self) -> Iterable[Metric]:
        """The families as prometheus-client Metric objects."""
        for family in self.families:
            metric = Metric(family["name"], family["help"], family["type"])
            for sample_name, labels, value in family["samples"]:
                metric.add_sample(sample_name, labels, value)
            yield metric


def render(families: Iterable[Family]) -> bytes:
    """The Prometheus text exposition of ``families``."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(families))
    return generate_latest(registry)
