"""The record stage: a point and its :class:`Measurement` -> kernel record (docs/benchmarking.md, "Records").

Every record has exactly ``mbs_layers.records.KERNEL_KEYS``: the point's identity, the
environment, the workload's counts (``workload.counts``), latency statistics and the rates and
roofline fraction derived from them, the energy fields, and the speedups over the point's
baselines' records. ``flops`` is what the layer executes; the *dense-equivalent* count (what
dense would execute at this shape) is :func:`dense_equivalent_flops`, derivable from any record.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..predicted import predicted_seconds
from ..records import KERNEL_KEYS
from .nvml import FIELDS as NVML_FIELDS
from .peaks import roofline_seconds
from .point import BACKWARD_FACTOR, Point
from .timer import is_noisy, summarize


@dataclass
class Measurement:
    """What measuring one point found (``SweepSession`` fills it); the record stage's input."""

    status: str  # "ok", "skipped: <reason>" or "failed: <reason>"
    energy: dict  # the energy fields: measured, or null with the reason
    counts: dict | None = None  # ``workload.counts`` of the built layer (None: never built)
    samples: list[float] | None = None  # seconds per call (None: not timed)
    nvml: dict | None = None  # the GPU's state after timing (None: not timed)
    peak_memory_bytes: int | None = None


def kernel_record(point: Point, measurement: Measurement, environment: dict, peaks: dict | None) -> dict:
    """The point's record without speedups (:func:`add_speedups` adds them once its baselines'
    records exist). ``environment``: ``device, versions, commit, hostname, cpu_threads``."""
    record = empty_record(point, **environment)
    record.update(measurement.energy)
    if measurement.counts is not None:
        record.update(measurement.counts)
        add_prediction(record)
    if measurement.nvml is not None:
        record["nvml"] = measurement.nvml
    if measurement.peak_memory_bytes is not None:
        record["peak_memory_bytes"] = measurement.peak_memory_bytes
    if measurement.status == "ok" and measurement.samples is not None:
        add_latency(record, measurement.samples, peaks)
    record["status"] = measurement.status
    return record


def empty_record(
    point: Point,
    device: str,
    versions: dict,
    commit: str | None,
    hostname: str | None = None,
    cpu_threads: int | None = None,
) -> dict:
    """All keys present, measured ones None, identity and environment filled in."""
    record = dict.fromkeys(KERNEL_KEYS)
    record.update(
        point.identity(),
        device=device,
        versions=versions,
        commit=commit,
        hostname=hostname,
        cpu_threads=cpu_threads,
        nvml=dict.fromkeys(NVML_FIELDS),
        param_count=point.param_count,
    )
    return record


def add_prediction(record: dict) -> dict:
    """``predicted_s``: the roofline bound of the record's counts at its GPU's datasheet peaks
    (None on a device without one, e.g. a CPU)."""
    record["predicted_s"] = predicted_seconds(record["device"], record["dtype"], record["flops"], record["min_bytes"])
    return record


def dense_equivalent_flops(record: dict) -> int:
    """FLOPs dense would execute at the record's shape, tokens and pass (2 per multiply-add)."""
    return BACKWARD_FACTOR[record["pass"]] * 2 * record["tokens"] * record["in_features"] * record["out_features"]


def add_latency(record: dict, samples: list[float], peaks: dict | None) -> dict:
    """Fill the latency stats and the rates derived from them (``samples`` in seconds)."""
    record.update(summarize(samples), samples_s=list(samples), noisy=is_noisy(samples))
    median = record["median_s"]
    if median > 0:
        record["tflops"] = record["flops"] / median / 1e12
        record["gbps"] = record["min_bytes"] / median / 1e9
        bound = roofline_seconds(peaks, record["dtype"], record["flops"], record["min_bytes"]) if peaks else None
        record["roofline_fraction"] = None if bound is None else bound / median
    return record


def speedup(baseline_median: float | None, median: float | None) -> float | None:
    """``baseline / median`` where both exist."""
    if not baseline_median or not median:
        return None
    return baseline_median / median


def add_speedups(record: dict, dense: dict | None, unstructured: dict | None) -> dict:
    """``speedup_vs_dense`` and ``speedup_vs_unstructured`` of an ok record from its baselines'
    records (None: no such baseline); a speedup is only as trustworthy as both timings it divides."""
    for key, base in (("speedup_vs_dense", dense), ("speedup_vs_unstructured", unstructured)):
        record[key] = speedup(base and base.get("median_s"), record["median_s"])
        record["noisy"] = bool(record["noisy"] or (record[key] is not None and base.get("noisy")))
    return record
