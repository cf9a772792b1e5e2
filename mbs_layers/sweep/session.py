"""A measuring session: one device, its peaks and timer, and every point measured so far.

``SweepSession.measure(point)`` returns the point's record and never raises for a point:
formats/backends that cannot run it are ``skipped: <reason>``; a fast backend that disagrees
with the torch reference is ``failed: wrong result`` and is never timed; OOM, Triton
compile errors and any other exception become ``failed: <reason>``. Speedups use the dense
and unstructured baselines (see ``point.py``), measured on demand when not yet measured.
"""
from __future__ import annotations

import gc

import torch

from ..records import point_key
from . import environment, nvml
from .peaks import measure_peaks
from .point import KEY_FIELDS, Point, dense_baseline, unstructured_baseline
from .presets import Preset
from .record import add_latency, add_prediction, counts, empty_record, speedup
from .timer import make_timer
from .workload import Workload

WRONG_RESULT = "failed: wrong result"


def failure_reason(err: BaseException) -> str:
    """``failed: <reason>`` for an exception raised while checking or timing a point."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [""]
    if isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in lines[0].lower():
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
        self.timer = make_timer(self.device, warmup=preset.warmup, repeats=preset.repeats)
        self.peaks = peaks if peaks is not None else measure_peaks(
            self.device, self.device_name, preset.dtypes, gemm_size=preset.gemm_size, copy_mib=preset.copy_mib)
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

    def _median(self, baseline: Point | None, point: Point, own: float | None) -> float | None:
        if baseline is None:
            return None
        return own if baseline.key == point.key else self.measure(baseline)["median_s"]

    def _measure(self, point: Point) -> dict:
        record = empty_record(point, self.device_name, environment.versions(), environment.git_commit())
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
            except Exception as err:  # noqa: BLE001  (OOM, Triton compile errors, kernel bugs)
                status = failure_reason(err)
            del work  # before releasing memory: the next point may need all of it
        if status is not None:
            self._release_memory()
            return {**record, "status": status}
        add_latency(record, samples, self.peaks)
        record["status"] = "ok"
        median = record["median_s"]
        record["speedup_vs_dense"] = speedup(
            self._median(dense_baseline(point, self.device.type), point, median), median)
        record["speedup_vs_unstructured"] = speedup(
            self._median(unstructured_baseline(point, self.device.type), point, median), median)
        return record

    def _release_memory(self) -> None:
        """Return what a failed point left behind (tracebacks hold its tensors) to the device."""
        if self.device.type == "cuda":
            gc.collect()
            torch.cuda.empty_cache()
