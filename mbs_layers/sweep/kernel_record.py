"""Point -> kernel record (docs/benchmarking.md, "Records"): counts, latency and roofline fields.

Every record has exactly ``mbs_layers.records.KERNEL_KEYS``. ``flops`` is what the layer
executes (``forward_flops``; x3 for forward+backward: each product in the forward has two of
the same size in the backward). For 2:4 and other sparse formats that is the *actual* count;
the *dense-equivalent* count (what dense would execute at this shape) is
:func:`dense_equivalent_flops`, derivable from any record. ``min_bytes`` assumes every
operand crosses memory exactly once per pass (perfect fusion), the roofline's lower bound.
"""
from __future__ import annotations

from ..predicted import predicted_seconds
from ..records import KERNEL_KEYS
from .nvml import FIELDS as NVML_FIELDS
from .peaks import roofline_seconds
from .point import Point
from .timer import is_noisy, summarize

BACKWARD_FACTOR = {"fwd": 1, "fwd_bwd": 3}


def empty_record(point: Point, device: str, versions: dict, commit: str | None,
                 hostname: str | None = None, cpu_threads: int | None = None) -> dict:
    """All keys present, measured ones None, identity and environment filled in."""
    record = dict.fromkeys(KERNEL_KEYS)
    record.update(point.identity(), device=device, versions=versions, commit=commit, hostname=hostname,
                  cpu_threads=cpu_threads,
                  nvml=dict.fromkeys(NVML_FIELDS), param_count=point.param_count)
    return record


def counts(layer, tokens: int, pass_: str) -> dict:
    """``param_count, storage_bytes, flops, min_bytes`` of one pass over ``tokens`` rows."""
    itemsize = layer.weight_dtype.itemsize
    weights, params = layer.storage_bytes(), layer.param_count()
    x, y = tokens * layer.in_features * itemsize, tokens * layer.out_features * itemsize
    forward = weights + x + y
    # backward reads W, x, dy and writes dx, dW
    min_bytes = forward if pass_ == "fwd" else forward + weights + 2 * x + y + params * itemsize
    return {"param_count": params, "storage_bytes": weights,
            "flops": BACKWARD_FACTOR[pass_] * int(layer.forward_flops(tokens)), "min_bytes": min_bytes}


def add_prediction(record: dict) -> dict:
    """``predicted_s``: the roofline bound of the record's counts at its GPU's datasheet peaks
    (None on a device without one, e.g. a CPU)."""
    record["predicted_s"] = predicted_seconds(record["device"], record["dtype"], record["flops"],
                                              record["min_bytes"])
    return record


def dense_equivalent_flops(record: dict) -> int:
    """FLOPs dense would execute at the record's shape, tokens and pass (2 per multiply-add)."""
    return (BACKWARD_FACTOR[record["pass"]] * 2 * record["tokens"]
            * record["in_features"] * record["out_features"])


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
