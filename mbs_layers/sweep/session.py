"""The measuring stage: one device, its peaks and timer, and every point measured so far.

``SweepSession.measure(point)`` measures a planned point (``workload`` builds it, ``timer``
times it, ``energy`` reads the energy counter) into a ``kernel_record.Measurement`` and hands
that to the record stage (``kernel_record``) for the point's record. It chooses nothing: the
backend, hyper-parameters and baselines come on the point (``plan.py``). It never raises for a
point: formats/backends that cannot run it are ``skipped: <reason>``; a fast backend that
disagrees with the torch reference is ``failed: wrong result`` and is never timed; OOM, Triton
compile errors and any other exception become ``failed: <reason>``. A baseline not measured
yet (a pytest-xdist worker may get a point without its baselines) is measured on demand.
"""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING

import torch

from ..records import point_key
from . import environment, nvml
from .energy import EnergyMeter
from .kernel_record import Measurement, add_speedups, kernel_record
from .peaks import measure_peaks
from .point import KEY_FIELDS, Point
from .timer import make_timer
from .workload import Workload, counts

if TYPE_CHECKING:  # the session reads the preset's timer, peaks and energy settings
    from .presets import Preset

WRONG_RESULT = "failed: wrong result"
# CUDA's and the CPU allocator's words for an allocation that did not fit
OOM_MESSAGES = ("out of memory", "can't allocate memory")


def failure_reason(err: BaseException) -> str:
    """``failed: <reason>`` for an exception raised while checking or timing a point."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [""]
    if isinstance(err, (torch.cuda.OutOfMemoryError, MemoryError)) or any(
        text in lines[0].lower() for text in OOM_MESSAGES
    ):
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
        self.peaks = (
            peaks
            if peaks is not None
            else measure_peaks(
                self.device, self.device_name, preset.dtypes, gemm_size=preset.gemm_size, copy_mib=preset.copy_mib
            )
        )
        self.energy = EnergyMeter.open(
            self.device, mode=preset.energy_mode, min_window_s=preset.energy_min_window_s, repeats=preset.energy_repeats
        )
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
            self._records[point.key] = self._record(point)
        return self._records[point.key]

    def _baseline(self, baseline: Point | None, point: Point, own: dict) -> dict | None:
        """The record of a baseline the plan resolved (``own`` where the point is its own)."""
        if baseline is None:
            return None
        return own if baseline.key == point.key else self.measure(baseline)

    def _record(self, point: Point) -> dict:
        record = kernel_record(point, self._measure(point), self._environment(), self.peaks)
        if record["status"] == "ok":
            add_speedups(
                record, self._baseline(point.dense, point, record), self._baseline(point.unstructured, point, record)
            )
        return record

    def _environment(self) -> dict:
        return {
            "device": self.device_name,
            "versions": environment.versions(),
            "commit": environment.git_commit(),
            "hostname": environment.hostname(),
            "cpu_threads": self.cpu_threads,
        }

    def _measure(self, point: Point) -> Measurement:
        result = Measurement("ok", self.energy.not_measured("point_not_ok"))
        if point.skip_reason:
            result.status = f"skipped: {point.skip_reason}"
            return result
        try:
            work = Workload(point, self.device)
        except ValueError as err:  # the format or backend cannot represent/run this point
            result.status = f"skipped: {err}"
            return result
        except Exception as err:  # noqa: BLE001  (OOM while building, ...)
            result.status = failure_reason(err)
        else:
            result.counts = counts(work.layer, point.tokens, point.pass_)
            try:
                if point.backend != "torch" and not work.matches_reference():
                    result.status = WRONG_RESULT
                else:
                    result.samples = self.timer.measure(work.run)
                    result.nvml = nvml.gpu_state(self.device)
                    result.peak_memory_bytes = work.peak_memory_bytes()
                    # after the gate and the timing, never instead of them
                    result.energy = (
                        self.energy.measure(work.run, per_call_s=min(result.samples), tokens=point.tokens)
                        if point.energy
                        else self.energy.not_measured("not_selected")
                    )
            except Exception as err:  # noqa: BLE001  (OOM, Triton compile errors, kernel bugs)
                result.status = failure_reason(err)
            del work  # before releasing memory: the next point may need all of it
        if result.status != "ok":
            self._release_memory()
        return result

    def _release_memory(self) -> None:
        """Return what a failed point left behind (tracebacks hold its tensors) to the device."""
        if self.device.type == "cuda":
            gc.collect()
            torch.cuda.empty_cache()
