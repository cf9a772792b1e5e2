"""Device-accurate timers: fixed-count repeats, warm-up (and compilation) outside the timed region.

``CudaTimer`` records a pair of CUDA events around each repeat and writes an L2-sized buffer
between repeats, so every repeat starts with a cold cache and no host time is counted; a
call that takes less than ``graph_below_s`` is captured once in a CUDA graph and replayed,
which removes the launch overhead that would otherwise dominate microsecond-scale kernels.
``CpuTimer`` is the fallback (``time.perf_counter`` around each repeat) for CPU runs.
Both return the raw per-repeat samples in seconds; :func:`summarize` gives median/q10/q90.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

DEFAULT_FLUSH_BYTES = 256 * 2**20  # used when the device does not report its L2 size
GRAPH_BELOW_S = 100e-6


def summarize(samples: list[float]) -> dict:
    """``median_s``, ``q10_s``, ``q90_s`` of the samples (inclusive quantiles)."""
    if len(samples) == 1:
        return {"median_s": samples[0], "q10_s": samples[0], "q90_s": samples[0]}
    deciles = statistics.quantiles(samples, n=10, method="inclusive")
    return {"median_s": statistics.median(samples), "q10_s": deciles[0], "q90_s": deciles[-1]}


@dataclass
class CpuTimer:
    """Host wall-clock per repeat (the CPU fallback)."""

    warmup: int = 1
    repeats: int = 10

    def measure(self, fn: Callable[[], object]) -> list[float]:
        for _ in range(self.warmup):
            fn()
        samples = []
        for _ in range(self.repeats):
            start = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - start)
        return samples


class CudaTimer:
    """CUDA events around each repeat, L2 flushed in between, CUDA graphs for tiny calls."""

    def __init__(self, device, *, warmup: int = 3, repeats: int = 20, graph_below_s: float | None = GRAPH_BELOW_S):
        self.device = torch.device(device)
        self.warmup, self.repeats, self.graph_below_s = warmup, repeats, graph_below_s
        l2 = getattr(torch.cuda.get_device_properties(self.device), "L2_cache_size", 0)
        self._flush = torch.empty(2 * l2 or DEFAULT_FLUSH_BYTES, dtype=torch.int8, device=self.device)
        self.used_graph = False  # whether the last measure() replayed a CUDA graph

    def measure(self, fn: Callable[[], object]) -> list[float]:
        for _ in range(max(1, self.warmup)):  # also compiles/autotunes Triton kernels
            fn()
        run = fn
        if self.graph_below_s is not None and self._time(fn, 1)[0] < self.graph_below_s:
            with torch.cuda.device(self.device):  # capture (and its sync) on our GPU, not the current one
                run = capture_graph(fn) or fn
        self.used_graph = run is not fn
        return self._time(run, self.repeats)

    def _time(self, fn, repeats: int) -> list[float]:
        with torch.cuda.device(self.device):
            pairs = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                     for _ in range(repeats)]
            for start, end in pairs:
                self._flush.zero_()
                start.record()
                fn()
                end.record()
            torch.cuda.synchronize(self.device)
        return [start.elapsed_time(end) / 1e3 for start, end in pairs]


def capture_graph(fn: Callable[[], object]) -> Callable[[], None] | None:
    """``fn`` captured in a CUDA graph (its replay), or None where ``fn`` cannot be captured."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm up on a side stream, as graph capture requires
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            fn()
    except Exception:  # e.g. a host sync inside fn: time it eagerly instead
        torch.cuda.synchronize()
        return None
    return graph.replay


def make_timer(device: torch.device, *, warmup: int, repeats: int):
    """``CudaTimer`` on CUDA devices, ``CpuTimer`` elsewhere."""
    if device.type == "cuda":
        return CudaTimer(device, warmup=warmup, repeats=repeats)
    return CpuTimer(warmup=warmup, repeats=repeats)
