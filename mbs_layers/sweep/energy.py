"""Energy per call from the hardware's own cumulative energy counter, beside the timing.

Sources: NVML's ``nvmlDeviceGetTotalEnergyConsumption`` (millijoules since the driver loaded;
NVIDIA GPUs from Volta on) for CUDA devices, and Linux RAPL package counters
(``/sys/class/powercap/intel-rapl:N/energy_uj``) for CPU runs that ask for it.

Method (docs/benchmarking.md, "Energy"): the counter only moves every few tens of
milliseconds, so one call is far below its resolution. We measure the counter's update period
once, choose a window long enough that one update is at most ``TARGET_RESOLUTION`` of it (at
least ``min_window_s``), start each window on a counter update, call the workload
back-to-back for the window, synchronise, and read the counter again; ``repeats`` windows give
the median joules per call and their spread. Idle power is measured once per session and
recorded (never subtracted), so a reader can take it out.

Where no counter can be read the energy fields are ``None`` and ``energy_reason`` says why
(one of ``REASONS``): never a zero, never an estimate presented as measured.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..records import ENERGY_KEYS
from ..records.files import POWER_TRACE_SUFFIX
from . import nvml as nvml_state

REASONS = {
    "disabled": "the preset turned energy measurement off",
    "cpu_not_requested": "CPU energy (RAPL) is measured only when the preset asks for it (energy: on)",
    "no_nvml": "nvidia-ml-py or the NVIDIA driver is not available",
    "counter_unsupported": "this GPU or driver has no total-energy counter (pre-Volta, or not exposed)",
    "mig_slice": "the GPU is partitioned (MIG): its counter covers the whole GPU, not this slice",
    "rapl_unreadable": "no readable RAPL package counter under /sys/class/powercap",
    "counter_stalled": "the counter did not move during a measurement window",
    "counter_wrapped": "the counter went backwards and its range is unknown",
    "not_selected": "the preset reads the energy of other points only (energy: points)",
    "point_not_ok": "the point was skipped or failed, so nothing was measured",
}
TARGET_RESOLUTION = 0.02  # one counter update is at most 2% of a window
MIN_WINDOW_S = 1.0
MAX_WINDOW_S = 10.0
DEFAULT_REPEATS = 3


class Counter(Protocol):
    """A cumulative energy counter: ``read_j()`` in joules; ``range_j`` where it wraps (else None)."""

    source: str
    range_j: float | None

    def read_j(self) -> float: ...


@dataclass
class NvmlCounter:
    """A GPU's total-energy counter (millijoules in NVML)."""

    nvml: object
    handle: object
    source: str = "nvml"
    range_j: float | None = None  # a 64-bit count of mJ: it does not wrap in practice

    def read_j(self) -> float:
        return self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) / 1e3

    def power_w(self) -> float:
        return self.nvml.nvmlDeviceGetPowerUsage(self.handle) / 1e3


@dataclass
class RaplCounter:
    """The sum of the CPU packages' RAPL counters (microjoules; each wraps at its own range)."""

    files: list[Path]
    ranges_uj: list[int]
    source: str = "rapl"
    _last: list[int] = field(default_factory=list)
    _total_uj: int = 0

    @property
    def range_j(self) -> float | None:
        return None  # wraps are unfolded per package in read_j

    def read_j(self) -> float:
        now = [int(f.read_text()) for f in self.files]
        if self._last:
            for before, after, span in zip(self._last, now, self.ranges_uj):
                self._total_uj += after - before if after >= before else after + span - before
        self._last = now
        return self._total_uj / 1e6


def rapl_counter(root: Path = Path("/sys/class/powercap")) -> RaplCounter | None:
    """The package-level RAPL counters under ``root``, or None where none is readable."""
    files, ranges = [], []
    for zone in sorted(root.glob("intel-rapl:*")):
        if zone.name.count(":") != 1:  # sub-zones (core, uncore, dram) are inside the package
            continue
        try:
            int((zone / "energy_uj").read_text())
            ranges.append(int((zone / "max_energy_range_uj").read_text()))
        except (OSError, ValueError):
            continue
        files.append(zone / "energy_uj")
    if not files:
        return None
    counter = RaplCounter(files, ranges)
    counter.read_j()
    return counter


def nvml_counter(device) -> NvmlCounter | str:
    """The counter of a torch CUDA device, or the reason (a ``REASONS`` key) why there is none."""
    nvml = nvml_state._nvml()
    if nvml is None:
        return "no_nvml"
    try:
        handle = nvml_state._handle(nvml, device)
    except Exception:  # noqa: BLE001  (NVML does not know this device)
        return "no_nvml"
    return check_nvml_counter(nvml, handle)


def check_nvml_counter(nvml, handle) -> NvmlCounter | str:
    """``NvmlCounter`` for ``handle`` if its counter is readable and attributable, else a reason."""
    try:
        current, _pending = nvml.nvmlDeviceGetMigMode(handle)
        if current:
            return "mig_slice"
    except Exception:  # noqa: BLE001  (no MIG support on this GPU: fine)
        pass
    counter = NvmlCounter(nvml, handle)
    try:
        counter.read_j()
    except Exception:  # noqa: BLE001  (NVMLError_NotSupported on pre-Volta GPUs, vGPU, ...)
        return "counter_unsupported"
    return counter


def open_counter(device, mode: str = "auto") -> Counter | str:
    """The energy counter for ``device`` under the preset's ``mode`` (auto | on | off), or a reason.

    ``auto`` reads a GPU's counter and leaves CPUs alone (a RAPL window per point would
    multiply a CPU sweep's time); ``on`` also reads RAPL on CPU runs; ``off`` reads nothing.
    """
    if mode == "off":
        return "disabled"
    if getattr(device, "type", device) == "cuda":
        return nvml_counter(device)
    if mode != "on":
        return "cpu_not_requested"
    return rapl_counter() or "rapl_unreadable"


def null_energy(reason: str, idle_power_w: float | None = None) -> dict:
    """Every energy field ``None`` except the reason (and the session's idle power, if any)."""
    if reason not in REASONS:
        raise ValueError(f"reason={reason!r} is not an energy reason: allowed {sorted(REASONS)}")
    return {**dict.fromkeys(ENERGY_KEYS), "energy_reason": reason, "idle_power_w": idle_power_w}


def _delta(counter: Counter, before: float, after: float) -> float | None:
    """Joules between two reads, unfolding one wrap where the counter's range is known."""
    if after >= before:
        return after - before
    return None if counter.range_j is None else after + counter.range_j - before


def wait_for_update(
    counter: Counter, *, timeout_s: float, clock=time.perf_counter, sleep=time.sleep
) -> tuple[float, float] | None:
    """Block until the counter moves; ``(time, value)`` just after it did, or None on timeout."""
    start, first = clock(), counter.read_j()
    while clock() - start < timeout_s:
        value = counter.read_j()
        if value != first:
            return clock(), value
        sleep(0.001)
    return None


def update_period(
    counter: Counter, *, updates: int = 5, timeout_s: float = 1.0, clock=time.perf_counter, sleep=time.sleep
) -> float | None:
    """Median seconds between counter updates (None if it stalls for ``timeout_s``)."""
    times = []
    for _ in range(updates + 1):
        moved = wait_for_update(counter, timeout_s=timeout_s, clock=clock, sleep=sleep)
        if moved is None:
            return None
        times.append(moved[0])
    return statistics.median(b - a for a, b in zip(times, times[1:]))


def choose_window(period_s: float, min_window_s: float = MIN_WINDOW_S) -> float:
    """The shortest window in which one counter update is at most ``TARGET_RESOLUTION`` of it."""
    return min(MAX_WINDOW_S, max(min_window_s, period_s / TARGET_RESOLUTION))


@dataclass
class EnergyMeter:
    """Measures joules per call on one device for a whole sweep session.

    Built once per session (``EnergyMeter.open``): probes the counter's update period, picks
    the window, and measures idle power over one window. ``measure(fn, per_call_s, tokens)``
    returns the energy fields of one point.
    """

    counter: Counter | None
    reason: str | None
    sync: Callable[[], None]
    window_s: float = MIN_WINDOW_S
    resolution: float | None = None
    repeats: int = DEFAULT_REPEATS
    idle_power_w: float | None = None
    clock: Callable[[], float] = time.perf_counter
    sleep: Callable[[float], None] = time.sleep

    @classmethod
    def open(
        cls,
        device,
        *,
        mode: str = "auto",
        min_window_s: float = MIN_WINDOW_S,
        repeats: int = DEFAULT_REPEATS,
        sync: Callable[[], None] | None = None,
        **clocks,
    ) -> EnergyMeter:
        counter = open_counter(device, mode)
        if sync is None:
            sync = _device_sync(device)
        if isinstance(counter, str):
            return cls(None, counter, sync, repeats=repeats, **clocks)
        meter = cls(counter, None, sync, repeats=repeats, **clocks)
        period = update_period(counter, clock=meter.clock, sleep=meter.sleep)
        if period is None:
            return cls(None, "counter_stalled", sync, repeats=repeats, **clocks)
        meter.window_s = choose_window(period, min_window_s)
        meter.resolution = period / meter.window_s
        meter.idle_power_w = meter._idle_power()
        return meter

    def _idle_power(self) -> float | None:
        start = wait_for_update(self.counter, timeout_s=1.0, clock=self.clock, sleep=self.sleep)
        if start is None:
            return None
        self.sleep(self.window_s)
        end = wait_for_update(self.counter, timeout_s=1.0, clock=self.clock, sleep=self.sleep)
        if end is None:
            return None
        joules = _delta(self.counter, start[1], end[1])
        return None if joules is None else joules / (end[0] - start[0])

    def not_measured(self, reason: str) -> dict:
        return null_energy(reason, self.idle_power_w)

    def measure(self, fn: Callable[[], object], *, per_call_s: float, tokens: int) -> dict:
        """Energy fields of ``fn`` (already warm) whose timed median is ``per_call_s``."""
        if self.counter is None:
            return self.not_measured(self.reason)
        calls = max(1, math.ceil(self.window_s / max(per_call_s, 1e-9) - 1e-6))
        per_call, power, seconds = [], [], []
        for _ in range(self.repeats):
            start = wait_for_update(self.counter, timeout_s=1.0, clock=self.clock, sleep=self.sleep)
            if start is None:
                return self.not_measured("counter_stalled")
            for _ in range(calls):
                fn()
            self.sync()
            end_t, end_j = self.clock(), self.counter.read_j()
            joules = _delta(self.counter, start[1], end_j)
            if joules is None:
                return self.not_measured("counter_wrapped")
            if joules == 0:
                return self.not_measured("counter_stalled")
            per_call.append(joules / calls)
            seconds.append(end_t - start[0])
            power.append(joules / seconds[-1])
        median = statistics.median(per_call)
        return {
            "energy_j_per_call": median,
            "energy_j_per_token": median / tokens,
            "energy_avg_power_w": statistics.median(power),
            "energy_window_s": statistics.median(seconds),
            "energy_repeats": self.repeats,
            "energy_calls_per_window": calls,
            "energy_spread": (max(per_call) - min(per_call)) / median,
            "energy_resolution": self.resolution,
            "energy_source": self.counter.source,
            "energy_reason": None,
            "idle_power_w": self.idle_power_w,
        }


def _device_sync(device) -> Callable[[], None]:
    if getattr(device, "type", device) == "cuda":
        import torch

        return lambda: torch.cuda.synchronize(device)
    return lambda: None


class PowerTrace:
    """Samples a GPU's power draw in a background thread and appends it to a JSONL file.

    One line per sample: ``{"t": unix seconds, "power_w": W, "device": name}``; flushed every
    ``flush_every`` samples and on ``stop()``, so a killed sweep keeps its trace up to then.
    """

    def __init__(
        self,
        counter: NvmlCounter,
        path: str | Path,
        device_name: str,
        *,
        interval_s: float = 0.1,
        flush_every: int = 50,
    ):
        self.counter, self.path, self.device_name = counter, Path(path), device_name
        self.interval_s, self.flush_every = interval_s, flush_every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mbs-power-trace", daemon=True)

    def __enter__(self) -> PowerTrace:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import json

        buffer: list[str] = []
        with self.path.open("a") as fh:
            while not self._stop.wait(self.interval_s):
                try:
                    watts = self.counter.power_w()
                except Exception:  # noqa: BLE001  (a transient NVML error: skip the sample)
                    continue
                buffer.append(json.dumps({"t": time.time(), "power_w": watts, "device": self.device_name}))
                if len(buffer) >= self.flush_every:
                    fh.write("\n".join(buffer) + "\n")
                    fh.flush()
                    buffer.clear()
            if buffer:
                fh.write("\n".join(buffer) + "\n")


def power_trace_path(store: str | Path) -> Path:
    """Where a sweep store's power trace goes: ``<store>.power.jsonl`` beside it."""
    store = Path(store)
    return store.with_name(store.name.removesuffix(".jsonl") + POWER_TRACE_SUFFIX)
