"""GPU state via NVML: null fields (never an error) without a GPU or the package; throttling flagged."""

import sys
from types import SimpleNamespace

import pytest
import torch

from mbs_layers.sweep import nvml


def test_cpu_device_gives_null_fields():
    assert nvml.gpu_state(torch.device("cpu")) == dict.fromkeys(nvml.FIELDS)


def test_without_the_package_fields_are_null(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml now raises ImportError
    assert nvml.gpu_state(torch.device("cuda", 0)) == dict.fromkeys(nvml.FIELDS)
    assert nvml.driver_version() is None
    assert nvml.device_count() == 0


def fake_pynvml(reason_mask):
    def fail():
        raise RuntimeError("NVML Shared Library Not Found")

    return SimpleNamespace(
        nvmlInit=lambda: None,
        NVML_CLOCK_SM=0,
        NVML_CLOCK_MEM=1,
        NVML_TEMPERATURE_GPU=0,
        nvmlDeviceGetClockInfo=lambda h, kind: (1980, 2619)[kind],
        nvmlDeviceGetTemperature=lambda h, sensor: 61,
        nvmlDeviceGetPowerUsage=lambda h: 412_000,
        nvmlDeviceGetCurrentClocksEventReasons=lambda h: reason_mask,
        nvmlSystemGetDriverVersion=fail,
    )


@pytest.mark.parametrize("mask,throttled", [(0x0, False), (0x1, False), (0x1 | 0x4, True), (0x40, True)])
def test_state_is_read_and_throttling_flagged(monkeypatch, mask, throttled):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(mask))
    monkeypatch.setattr(nvml, "_handle", lambda lib, device: "handle")
    state = nvml.gpu_state(torch.device("cuda", 0))
    assert state["sm_clock_mhz"] == 1980 and state["mem_clock_mhz"] == 2619
    assert state["temperature_c"] == 61 and state["power_w"] == 412.0
    assert state["clock_event_reasons"] == nvml.decode_reasons(mask)
    assert state["throttled"] is throttled
    assert nvml.driver_version() is None  # a failing query is a null, not an error


def test_decode_reasons_names_each_bit():
    assert nvml.decode_reasons(0x4 | 0x40) == ["sw_power_cap", "hw_thermal_slowdown"]
    assert nvml.decode_reasons(0) == []


@pytest.mark.parametrize(
    "worker,visible,expected", [("gw3", "0,1", "1"), ("gw2", "4, 5,6", "6"), ("", "0,1", None), ("gw0", "", None)]
)
def test_xdist_worker_gets_its_own_gpu(monkeypatch, worker, visible, expected):
    monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert nvml.pin_xdist_worker() == expected
    assert nvml.os.environ["CUDA_VISIBLE_DEVICES"] == (expected if expected is not None else visible)
