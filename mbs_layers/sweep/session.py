"""A measuring session: one device, its peaks and timer, and every point measured so far.

``SweepSession.measure(point)`` returns the point's record and never raises for a point:
formats/backends that cannot run it are ``skipped: <reason>``; a fast backend that disagrees
with the torch reference is ``failed: wrong result`` and is never timed; OOM, Triton
compile errors and any other exception become ``failed: <reason>``. Speedups use the dense
and unstructured baselines the plan resolved (``point.dense``, ``point.unstructured``),
measured on demand when not yet measured.
"""
from __future__ import annotations

import gc

import torch

from ..records import point_key
from . import environment, nvml
from .energy import EnergyMeter
from .kernel_record import add_latency, add_prediction, counts, empty_record, speedup
from .peaks import measure_peaks
from .point import KEY_FIELDS, Point
from .presets import Preset
from .timer import make_timer
from .workload import Workload

WRONG_RESULT = "failed: wrong result"
# CUDA's and the CPU allocator's words for an allocation that did not fit
OOM_MESSAGES = ("out of memory", "can't allocate memory")


def failure_reason(err: BaseException) -> str:
    """``failed: <reason>`` for an exception raised while checking or timing a point."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [""]
    if isinstance(err, (torch.cuda.OutOfMemoryError, MemoryError)) or any(
            text in lines[0].lower() for text in OOM_MESSAGES):
        return "failed: out of memory"
    if type(err).__module__.startswith("triton"):  # Triton puts the source first, the error last
        return f"failed: triton compile error: {type(err).__name__}: {lines[-1][:200]}"
    return f"failed: {type(err).__name__}: {lines[0][:200]}"


def measured_on(records, device_name: str) -> list[dict]:
    """The ``records`` measured on ``device_name``: a store shared between devices resumes,
    and takes baselines, only from its own device's records."""
    return [r for r in records if r.get("device") == device_name]


class SweepSession:
    """Measures points on one device; peaks are measured once, at construction."""

    def __init__(self, preset: Preset, device: str | torch.device | None = None, *, peaks: dict | None = None):
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.preset = preset
        self.device_name = environment.device_name(self.device)
        self.timer = make_timer(self.device, warmup=preset.warmup, repeats=preset.repeats, threads=preset.threads)
        self.cpu_threads = preset.threads if self.device.type == "cpu" else None
        self.peaks = peaks if peaks is not None else measure_peaks(
            self.device, self.device_name, preset.dtypes, gemm_size=preset.gemm_size, copy_mib=preset.copy_mib)
        self.energy = EnergyMeter.open(self.device, mode=preset.energy_mode,
                                       min_window_s=preset.energy_min_window_s, repeats=preset.energy_repeats)
        self._records: dict[str, dict] = {}

    def machine_info(self) -> dict:
        return environment.machine_info(self.device, self.peaks)

    def remember(self, records) -> list[dict]:
        """Reuse records measured earlier on this device (a resumed store) as baselines.

        Records of other devices are ignored; returns the ones kept."""
        records = measured_on(records, self.device_name)
        for record in records:
            self._records[point_key(record, KEY_FIELDS)] = record
        return records

    def measure(self, point: Point) -> dict:
        """The point's record (cached: a point is measured once per session)."""
        if point.key not in self._records:
            self._records[point.key] = self._measure(point)
        return self._records[point.key]

    def _baseline(self, baseline: Point | None, point: Point, own: dict) -> dict | None:
        if baseline is None:
            return None
        return own if baseline.key == point.key else self.measure(baseline)

    def _measure(self, point: Point) -> dict:
        record = empty_record(point, self.device_name, environment.versions(), environment.git_commit(),
                              environment.hostname(), self.cpu_threads)
        record.update(self.energy.not_measured("point_not_ok"))
        if point.skip_reason:
            return {**record, "status": f"skipped: {point.skip_reason}"}
        status, samples = None, None
        try:
            work = Workload(point, self.device)
        except ValueError as err:  # the format or backend cannot represent/run this point
            return {**record, "status": f"skipped: {err}"}
        except Exception as err:  # noqa: BLE001  (OOM while building, ...)
            status = failure_reason(err)
        else:
            record.update(counts(work.layer, point.tokens, point.pass_))
            add_prediction(record)
            try:
                if point.backend != "torch" and not work.matches_reference():
                    status = WRONG_RESULT
                else:
                    samples = self.timer.measure(work.run)
                    record["nvml"] = nvml.gpu_state(self.device)
                    record["peak_memory_bytes"] = work.peak_memory_bytes()
                    # after the gate and the timing, never instead of them
                    record.update(self.energy.measure(work.run, per_call_s=min(samples),
                                                      tokens=point.tokens))
            except Exception as err:  # noqa: BLE001  (OOM, Triton compile errors, kernel bugs)
                status = failure_reason(err)
            del work  # before releasing memory: the next point may need all of it
        if status is not None:
            self._release_memory()
            return {**record, "status": status}
        add_latency(record, samples, self.peaks)
        record["status"] = "ok"
        median = record["median_s"]
        for key, baseline in (("speedup_vs_dense", point.dense), ("speedup_vs_unstructured", point.unstructured)):
            base = self._baseline(baseline, point, record)
            record[key] = speedup(base and base.get("median_s"), median)
            # a speed-up is only as trustworthy as both timings it divides
            record["noisy"] = bool(record["noisy"] or (record[key] is not None and base.get("noisy")))
        return record

    def _release_memory(self) -> None:
        """Return what a failed point left behind (tracebacks hold its tensors) to the device."""
        if self.device.type == "cuda":
            gc.collect()
            torch.cuda.empty_cache()
