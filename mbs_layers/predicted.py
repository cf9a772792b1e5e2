"""Roofline-predicted times: what a record's FLOPs and minimum bytes would take at a GPU's
datasheet peaks (``mbs_layers.datasheet``), the lower bound a measured time is a fraction of.

Predictions need no GPU: the counts are device-independent, so a CPU run can show what an
A100 or H100 could at best do. They are labelled *predicted* wherever shown and are never
mixed with measured times.
"""

from __future__ import annotations

from .datasheet import datasheet_peaks

# The GPUs the report predicts for even without a measurement on them (datasheet names).
PREDICTED_GPUS = ("NVIDIA A100-SXM4-80GB", "NVIDIA H100")


def predicted_seconds(device_name: str | None, dtype: str, flops, min_bytes) -> float | None:
    """max(FLOPs / peak FLOP/s, bytes / peak B/s) at ``device_name``'s datasheet peaks
    (None for a device without a datasheet entry, e.g. a CPU, or missing counts)."""
    peaks = datasheet_peaks(device_name or "")
    if peaks is None or flops is None or min_bytes is None:
        return None
    rate = peaks["flops"].get(dtype)
    if not rate:
        return None
    return max(float(flops) / rate, float(min_bytes) / peaks["bandwidth"])
