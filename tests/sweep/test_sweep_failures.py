"""Points that cannot run or break are recorded with their reason, and the sweep goes on."""

import ast

import pytest
import torch
from sweep_helpers import FIXED_PEAKS, write_preset
from triton.compiler.errors import CompilationError

from mbs_layers import backends
from mbs_layers.records import RecordStore
from mbs_layers.sweep import run_sweep
from mbs_layers.sweep.session import failure_reason
from mbs_layers.sweep.workload import Workload


@pytest.fixture(autouse=True)
def fixed_peaks(monkeypatch):
    """Skip the peak measurement: these tests are about records, not rates."""
    monkeypatch.setattr("mbs_layers.sweep.session.measure_peaks", lambda *a, **k: FIXED_PEAKS)


def by_point(records):
    return {(r["format"], r["backend"], r["pass"]): r for r in records}


def test_oom_and_compile_errors_are_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    errors = {
        "fwd": torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        "fwd_bwd": CompilationError("def k(): pass", ast.parse("x").body[0], "too many registers"),
    }
    run = Workload.run

    def breaking_run(self):
        if self.point.format == "lowrank":
            raise errors[self.point.pass_]
        return run(self)

    monkeypatch.setattr(Workload, "run", breaking_run)
    preset = write_preset(tmp_path / "p.yaml", budgets=[0.5, 0.001])
    records = RecordStore(run_sweep(preset, tmp_path / "s.jsonl", progress=False)).records()
    got = by_point(r for r in records if not r["status"].startswith("skipped"))
    assert got["lowrank", "torch", "fwd"]["status"] == "failed: out of memory"
    assert got["lowrank", "torch", "fwd_bwd"]["status"] == (
        "failed: triton compile error: CompilationError: too many registers"
    )
    assert got["dense", "torch", "fwd_bwd"]["status"] == "ok"  # measured after the OOM
    assert got["lowrank", "torch", "fwd"]["median_s"] is None
    skipped = [r for r in records if r["status"].startswith("skipped")]
    assert {r["pass"] for r in skipped} == {"fwd", "fwd_bwd"}  # budget 0.001: no lowrank fits
    assert all("0.001" in r["status"] and r["format"] == "lowrank" for r in skipped)


def _fake_backend(monkeypatch, forward, unsupported_reason=None):
    """Make ``forward`` lowrank's only fast backend ("triton") for this test."""
    impl = backends.BackendImpl(forward, lambda layer, x2d: unsupported_reason, priority=0)
    monkeypatch.setitem(backends._REGISTRY, backends.format_key("lowrank"), {"triton": impl})


@pytest.mark.parametrize("wrong", [True, False])
def test_fast_backend_is_gated_against_the_reference(tmp_path, monkeypatch, wrong):
    _fake_backend(monkeypatch, lambda layer, x2d: layer._forward_torch(x2d) * (1.01 if wrong else 1.0))
    timed, run = [], Workload.run

    def recording_run(self):
        timed.append(self.point.backend)
        return run(self)

    monkeypatch.setattr(Workload, "run", recording_run)
    preset = write_preset(tmp_path / "p.yaml", formats=["lowrank"], backends=["torch", "triton"])
    records = by_point(RecordStore(run_sweep(preset, tmp_path / "s.jsonl", progress=False)))
    for pass_ in ("fwd", "fwd_bwd"):
        assert records["lowrank", "torch", pass_]["status"] == "ok"
        assert records["lowrank", "triton", pass_]["status"] == ("failed: wrong result" if wrong else "ok")
    assert ("triton" in timed) is not wrong  # a wrong backend is never timed


def test_unsupported_backend_is_skipped_with_its_reason(tmp_path, monkeypatch):
    _fake_backend(monkeypatch, lambda layer, x2d: None, unsupported_reason="needs sm90")
    preset = write_preset(tmp_path / "p.yaml", formats=["lowrank"], backends=["triton"], passes=["fwd"])
    records = by_point(RecordStore(run_sweep(preset, tmp_path / "s.jsonl", progress=False)))
    assert records["lowrank", "triton", "fwd"]["status"].startswith("skipped: ")
    assert "needs sm90" in records["lowrank", "triton", "fwd"]["status"]


def test_failure_reasons_name_the_cause():
    assert failure_reason(RuntimeError("CUDA error: out of memory\nmore")) == "failed: out of memory"
    assert failure_reason(RuntimeError("illegal memory access\ntrace")) == "failed: RuntimeError: illegal memory access"


def test_a_store_from_another_device_is_neither_resumed_nor_used_as_baseline(tmp_path):
    from mbs_layers.records import point_key
    from mbs_layers.sweep.plan import expand
    from mbs_layers.sweep.point import KEY_FIELDS
    from mbs_layers.sweep.presets import load_preset

    preset = write_preset(tmp_path / "p.yaml", passes=["fwd"])
    store = RecordStore(tmp_path / "s.jsonl")
    points = expand(load_preset(preset), "cpu")
    for p in points:  # every point "done" elsewhere, with absurd medians
        store.append({**p.identity(), "device": "Some Other GPU", "status": "ok", "median_s": 1e6})
    records = RecordStore(run_sweep(preset, store.path, progress=False)).records()
    here = [r for r in records if r["device"] != "Some Other GPU"]
    assert {point_key(r, KEY_FIELDS) for r in here} == {p.key for p in points}
    ok = [r for r in here if r["status"] == "ok"]
    assert ok and all(r["speedup_vs_dense"] is None or r["speedup_vs_dense"] < 1e3 for r in ok)
    # re-run on the same device: now everything is done, nothing is appended
    assert len(RecordStore(run_sweep(preset, store.path, progress=False)).records()) == len(records)
