"""Device-accurate timers: fixed-count repeats, warm-up (and compilation) outside the timed region.

``CudaTimer`` records a pair of CUDA events around each repeat and writes an L2-sized buffer
between repeats, so every repeat starts with a cold cache and no host time is counted; a
call that takes less than ``graph_below_s`` is captured once in a CUDA graph and replayed,
which removes the launch overhead that would otherwise dominate microsecond-scale kernels.
``CpuTimer`` is the CPU timer (docs/benchmarking.md, "CPU timing"): torch's thread count
pinned for the measurement, warm-up until two successive warm-up batches agree, each repeat
long enough (``min_repeat_s``) that the clock's resolution and a single call's jitter do not
dominate, at least :data:`MIN_CPU_REPEATS` repeats (so ``mbs compare``'s test can reach its
alpha), and far-out slow repeats (scheduler preemptions) dropped by :func:`drop_outliers`.
Both return per-repeat samples in seconds; :func:`summarize` gives median/q10/q90 and
:func:`is_noisy` says when the spread is too large to trust the point.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

DEFAULT_FLUSH_BYTES = 256 * 2**20  # used when the device does not report its L2 size
GRAPH_BELOW_S = 100e-6
MIN_CPU_REPEATS = 10  # one-sided Mann-Whitney floor 1/C(20, 10) ~ 5e-6: any alpha >= 1e-5 is reachable
DEFAULT_CPU_THREADS = 1  # a shared host's other cores come and go; one thread is what can be reproduced
OUTLIER_IQR = 3.0  # Tukey's far-out fence: a repeat above Q3 + 3 IQR was preempted, not slow
NOISY_SPREAD = 1.5  # q90 / q10 above this: the point's timing is too spread to trust


def summarize(samples: list[float]) -> dict:
    """``median_s``, ``q10_s``, ``q90_s`` of the samples (inclusive quantiles)."""
    if len(samples) == 1:
        return {"median_s": samples[0], "q10_s": samples[0], "q90_s": samples[0]}
    deciles = statistics.quantiles(samples, n=10, method="inclusive")
    return {"median_s": statistics.median(samples), "q10_s": deciles[0], "q90_s": deciles[-1]}


def drop_outliers(samples: list[float]) -> list[float]:
    """The samples without far-out slow ones (above Q3 + ``OUTLIER_IQR`` x IQR); fast ones stay,
    since a repeat cannot be faster than the work it does."""
    if len(samples) < 4:
        return list(samples)
    q1, _, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    fence = q3 + OUTLIER_IQR * (q3 - q1)
    return [s for s in samples if s <= fence]


def is_noisy(samples: list[float]) -> bool:
    """True when ``q90 / q10`` of the samples exceeds ``NOISY_SPREAD``."""
    stats = summarize(samples)
    return stats["q10_s"] <= 0 or stats["q90_s"] / stats["q10_s"] > NOISY_SPREAD


@contextlib.contextmanager
def pinned_threads(threads: int):
    """torch's intra-op thread count set to ``threads`` for the block, then restored."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class CpuTimer:
    """Host wall-clock per repeat, thread count pinned, warm-up until stable, outliers dropped."""

    warmup: int = 1  # calls per warm-up batch
    repeats: int = MIN_CPU_REPEATS  # raised to MIN_CPU_REPEATS
    threads: int = DEFAULT_CPU_THREADS
    min_repeat_s: float = 1e-3  # a repeat loops the call until it lasts this long
    max_warmup_s: float = 0.2  # warm-up stops here even if not yet stable
    stable_within: float = 0.1  # successive warm-up batches agree within 10%

    def measure(self, fn: Callable[[], object]) -> list[float]:
        with pinned_threads(self.threads):
            calls = self._warm_up(fn)
            samples = []
            for _ in range(max(self.repeats, MIN_CPU_REPEATS)):
                start = time.perf_counter()
                for _ in range(calls):
                    fn()
                samples.append((time.perf_counter() - start) / calls)
        return drop_outliers(samples)

    def _warm_up(self, fn) -> int:
        """Run batches of calls (grown until a batch lasts ``min_repeat_s``) until two successive
        batches agree per call; return the calls per repeat (>= 1)."""
        deadline, previous, calls = time.perf_counter() + self.max_warmup_s, None, max(1, self.warmup)
        while True:
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            elapsed = time.perf_counter() - start
            per_call = elapsed / calls
            stable = previous is not None and abs(per_call - previous) <= self.stable_within * previous
            if stable or time.perf_counter() >= deadline:
                return max(1, int(self.min_repeat_s / per_call)) if per_call > 0 else 1
            previous = per_call
            if elapsed < self.min_repeat_s:  # too short to compare: grow the batch, compare afresh
                calls, previous = calls * 2, None


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
            pairs = [
                (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(repeats)
            ]
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
    except Exception:  # noqa: BLE001  (e.g. a host sync inside fn: time it eagerly instead)
        torch.cuda.synchronize()
        return None
    return graph.replay


def make_timer(device: torch.device, *, warmup: int, repeats: int, threads: int = DEFAULT_CPU_THREADS):
    """``CudaTimer`` on CUDA devices, ``CpuTimer`` (``threads`` pinned) elsewhere."""
    if device.type == "cuda":
        return CudaTimer(device, warmup=warmup, repeats=repeats)
    return CpuTimer(warmup=warmup, repeats=repeats, threads=threads)
