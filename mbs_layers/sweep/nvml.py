"""GPU state through nvidia-ml-py: clocks, temperature, power, clock-event (throttle) reasons.

Every function degrades to ``None`` values (never an error) without the package, a driver
or a GPU, so CPU runs and machines without NVML record null fields.
"""

from __future__ import annotations

import os

FIELDS = ("sm_clock_mhz", "mem_clock_mhz", "temperature_c", "power_w", "clock_event_reasons", "throttled")
# Clock-event reason bits (nvml.h); the ones in THROTTLING mean the clocks were held down.
REASON_BITS = {
    "gpu_idle": 0x1,
    "applications_clocks_setting": 0x2,
    "sw_power_cap": 0x4,
    "hw_slowdown": 0x8,
    "sync_boost": 0x10,
    "sw_thermal_slowdown": 0x20,
    "hw_thermal_slowdown": 0x40,
    "hw_power_brake_slowdown": 0x80,
    "display_clock_setting": 0x100,
}
THROTTLING = {"sw_power_cap", "hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown"}


def _nvml():
    """The initialised ``pynvml`` module, or None where NVML is unavailable."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml
    except Exception:  # noqa: BLE001  (no package, no driver, no GPU: all mean "no NVML")
        return None


def _handle(nvml, device):
    """NVML handle of a torch CUDA device (by UUID, so CUDA_VISIBLE_DEVICES remapping is honoured)."""
    import torch

    props = torch.cuda.get_device_properties(device)
    uuid = getattr(props, "uuid", None)
    if uuid is not None:
        try:
            return nvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}")
        except Exception:  # noqa: BLE001
            pass
    return nvml.nvmlDeviceGetHandleByIndex(torch.device(device).index or 0)


def decode_reasons(mask: int) -> list[str]:
    """Names of the clock-event reason bits set in ``mask``."""
    return [name for name, bit in REASON_BITS.items() if mask & bit]


def gpu_state(device) -> dict:
    """``FIELDS`` for a torch device right now; all None on CPU or without NVML."""
    state = dict.fromkeys(FIELDS)
    if device is None or getattr(device, "type", device) != "cuda":
        return state
    nvml = _nvml()
    if nvml is None:
        return state
    try:
        h = _handle(nvml, device)
        state["sm_clock_mhz"] = nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_SM)
        state["mem_clock_mhz"] = nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_MEM)
        state["temperature_c"] = nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU)
        state["power_w"] = nvml.nvmlDeviceGetPowerUsage(h) / 1000.0
        reasons_fn = (
            getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
            or nvml.nvmlDeviceGetCurrentClocksThrottleReasons
        )
        reasons = decode_reasons(int(reasons_fn(h)))
        state["clock_event_reasons"] = reasons
        state["throttled"] = bool(THROTTLING & set(reasons))
    except Exception:  # noqa: BLE001  (a query this GPU/driver does not support): keep what we got
        pass
    return state


def driver_version() -> str | None:
    nvml = _nvml()
    try:
        version = nvml.nvmlSystemGetDriverVersion()
    except Exception:  # noqa: BLE001
        return None
    return version.decode() if isinstance(version, bytes) else version


def device_count() -> int:
    """GPUs NVML sees (0 without NVML); does not initialise CUDA."""
    nvml = _nvml()
    try:
        return int(nvml.nvmlDeviceGetCount())
    except Exception:  # noqa: BLE001
        return 0


def visible_gpu_ids() -> list[str]:
    """GPU ids CUDA will see: ``CUDA_VISIBLE_DEVICES`` when set, else every GPU NVML counts."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [v.strip() for v in visible.split(",") if v.strip()]
    return [str(i) for i in range(device_count())]


def pin_xdist_worker() -> str | None:
    """Give this pytest-xdist worker its own GPU via ``CUDA_VISIBLE_DEVICES`` (before CUDA starts).

    Worker ``gwN`` gets GPU ``N mod count`` of the GPUs visible to the parent; returns the
    chosen id, or None when not an xdist worker or no GPU is visible.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    ids = visible_gpu_ids() if worker.startswith("gw") else []
    if not ids:
        return None
    os.environ["CUDA_VISIBLE_DEVICES"] = ids[int(worker[2:]) % len(ids)]
    return os.environ["CUDA_VISIBLE_DEVICES"]
