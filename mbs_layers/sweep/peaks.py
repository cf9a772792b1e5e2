"""Roofline peaks: measured on the device at session start, datasheet values as labels/fallback.

The compute roof per dtype is the median rate of a large square GEMM (``torch.matmul``, so
fp32 runs as plain fp32 unless the user enabled TF32); the memory roof is a large device
copy, counting the bytes read and written. Datasheet values (``mbs_layers.datasheet``) are kept beside the
measured ones and used only where a measurement failed.
"""

from __future__ import annotations

from functools import partial

import torch

from ..datasheet import datasheet_peaks  # the one table, shared with the report
from .timer import make_timer, summarize

DEFAULT_SIZES = {"cuda": (8192, 1024), "cpu": (512, 64)}  # (GEMM size, copy MiB)


def measure_peaks(device: torch.device, device_name: str, dtypes, *, gemm_size=None, copy_mib=None) -> dict:
    """Measured GEMM rate per dtype and copy bandwidth, with the datasheet beside them.

    Returns ``{"flops": {dtype: FLOP/s}, "bandwidth": B/s, "source": {...}, "datasheet": ...}``;
    a failed measurement falls back to the datasheet value (or None), and says so in ``source``.
    """
    default_gemm, default_copy = DEFAULT_SIZES["cuda" if device.type == "cuda" else "cpu"]
    n, copy_bytes = gemm_size or default_gemm, (copy_mib or default_copy) * 2**20
    sheet = datasheet_peaks(device_name)
    timer = make_timer(device, warmup=2, repeats=10)
    peaks = {"flops": {}, "bandwidth": None, "source": {}, "datasheet": sheet, "gemm_size": n, "copy_bytes": copy_bytes}
    for dtype in dtypes:
        try:
            a, b = (torch.randn(n, n, device=device).to(getattr(torch, dtype)) for _ in range(2))
            seconds = summarize(timer.measure(partial(torch.matmul, a, b)))["median_s"]
            peaks["flops"][dtype], peaks["source"][dtype] = 2 * n**3 / seconds, "measured"
            del a, b
        except Exception as err:  # noqa: BLE001 (e.g. OOM, dtype unsupported on this device)
            peaks["flops"][dtype] = (sheet or {}).get("flops", {}).get(dtype)
            peaks["source"][dtype] = f"datasheet ({type(err).__name__})"
    try:
        src = torch.empty(copy_bytes, dtype=torch.uint8, device=device)
        dst = torch.empty_like(src)
        seconds = summarize(timer.measure(lambda: dst.copy_(src)))["median_s"]
        peaks["bandwidth"], peaks["source"]["bandwidth"] = 2 * copy_bytes / seconds, "measured"
    except Exception as err:  # noqa: BLE001
        peaks["bandwidth"] = (sheet or {}).get("bandwidth")
        peaks["source"]["bandwidth"] = f"datasheet ({type(err).__name__})"
    return peaks


def roofline_seconds(peaks: dict, dtype: str, flops: int, min_bytes: int):
    """The roofline's lower bound on the time: max(FLOPs / compute roof, bytes / memory roof).

    ``flops`` are the actual FLOPs, so every format, 2:4 included, meets the dense tensor rate:
    sparse tensor cores run 2:4's kept multiply-adds at the dense rate (NVIDIA's "2x" peaks
    count dense-equivalent FLOPs; pairing those with the doubled peak gives the same bound).
    """
    rate = peaks["flops"].get(dtype)
    if not rate or not peaks.get("bandwidth"):
        return None
    return max(flops / rate, min_bytes / peaks["bandwidth"])
