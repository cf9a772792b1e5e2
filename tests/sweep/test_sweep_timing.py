"""Timer, record arithmetic, roofline peaks and the pytest-benchmark glue (CPU parts)."""

import json
from types import SimpleNamespace

import pytest
import torch

import mbs_layers as mbs
from mbs_layers.sweep.kernel_record import dense_equivalent_flops
from mbs_layers.sweep.peaks import datasheet_peaks, measure_peaks, roofline_seconds
from mbs_layers.sweep.pytest_support import WORKER_KEY, ReplayClock, XdistMerge, dumps, merge_documents
from mbs_layers.sweep.timer import CpuTimer, summarize
from mbs_layers.sweep.workload import counts


def test_summarize_quantiles():
    samples = [float(v) for v in range(1, 12)]  # 1..11
    assert summarize(samples) == {"median_s": 6.0, "q10_s": 2.0, "q90_s": 10.0}
    assert summarize([3.0]) == {"median_s": 3.0, "q10_s": 3.0, "q90_s": 3.0}


def test_cpu_timer_warms_up_outside_the_samples():
    calls = []
    samples = CpuTimer(warmup=2, repeats=5, min_repeat_s=0.0).measure(lambda: calls.append(1))
    # warm-up batches of 2 until two agree (at least 2 batches), then >= 10 repeats of 1 call
    assert len(calls) >= 4 + 10 and 7 <= len(samples) <= 10 and all(s >= 0 for s in samples)


def test_replay_clock_rounds_last_the_samples():
    clock, samples = ReplayClock(), [3e-6, 1e-3, 2.5e-5]
    clock.load(samples)
    durations = []
    for _ in samples:
        start = clock()
        durations.append(clock() - start)
    assert durations == pytest.approx(samples)


def test_counts_of_dense_and_backward():
    layer = mbs.build("dense", 48, 80, bias=False)
    fwd, both = counts(layer, 16, "fwd"), counts(layer, 16, "fwd_bwd")
    assert fwd["flops"] == 2 * 16 * 48 * 80 and both["flops"] == 3 * fwd["flops"]
    assert fwd["min_bytes"] == 4 * (48 * 80 + 16 * 48 + 16 * 80)  # W, x, y once each
    assert both["min_bytes"] > 2 * fwd["min_bytes"]
    record = {"pass": "fwd_bwd", "tokens": 16, "in_features": 48, "out_features": 80}
    assert dense_equivalent_flops(record) == both["flops"]


def test_lowrank_executes_fewer_flops_than_dense_equivalent():
    layer = mbs.build("lowrank", 64, 64, rank=4, bias=False)
    record = {"pass": "fwd", "tokens": 8, "in_features": 64, "out_features": 64}
    assert counts(layer, 8, "fwd")["flops"] == 2 * 8 * 4 * 128 < dense_equivalent_flops(record)


def test_roofline_bound_is_the_slower_roof():
    peaks = {"flops": {"float16": 1e12}, "bandwidth": 1e9}
    assert roofline_seconds(peaks, "float16", 4e12, 1e6) == pytest.approx(4.0)  # compute
    assert roofline_seconds(peaks, "float16", 1e6, 5e9) == pytest.approx(5.0)  # memory
    assert roofline_seconds(peaks, "float32", 1, 1) is None


def test_datasheet_peaks_by_device_name():
    assert datasheet_peaks("NVIDIA H100 80GB HBM3")["flops"]["bfloat16"] == 989e12
    assert datasheet_peaks("NVIDIA A100-SXM4-80GB")["bandwidth"] == 2.04e12
    assert datasheet_peaks("NVIDIA A100-SXM4-40GB")["bandwidth"] == 1.56e12
    assert datasheet_peaks("cpu: x86_64") is None


def test_measured_peaks_on_cpu_are_positive_and_fall_back_per_dtype():
    peaks = measure_peaks(
        torch.device("cpu"), "NVIDIA H100 80GB HBM3", ["float32", "no_such_dtype"], gemm_size=32, copy_mib=1
    )
    assert peaks["source"]["float32"] == "measured" and peaks["flops"]["float32"] > 0
    assert peaks["source"]["bandwidth"] == "measured" and peaks["bandwidth"] > 0
    assert peaks["source"]["no_such_dtype"].startswith("datasheet") and peaks["flops"]["no_such_dtype"] is None


def test_merge_documents_keeps_every_worker_benchmark():
    docs = [
        {"machine_info": {"node": w}, "commit_info": {}, "benchmarks": [{"name": f"{w}-{i}"} for i in range(n)]}
        for w, n in (("gw0", 2), ("gw1", 3))
    ]
    merged = merge_documents(docs)
    assert [b["name"] for b in merged["benchmarks"]] == ["gw0-0", "gw0-1", "gw1-0", "gw1-1", "gw1-2"]
    assert [m["node"] for m in merged["machine_info"]["workers"]] == ["gw0", "gw1"]


def test_xdist_controller_writes_the_merged_workers_json(tmp_path):
    out = tmp_path / "merged.json"
    config = SimpleNamespace(getoption=lambda name, default=None: out if name == "benchmark_json" else default)
    merge = XdistMerge(config)
    for worker in ("gw0", "gw1"):
        doc = {"machine_info": {"node": worker}, "benchmarks": [{"name": worker}]}
        merge.pytest_testnodedown(SimpleNamespace(workeroutput={WORKER_KEY: dumps(doc)}), error=None)
    merge.pytest_testnodedown(SimpleNamespace(workeroutput={}), error="crashed")  # a dead worker
    merge.pytest_sessionfinish(session=None)
    assert [b["name"] for b in json.loads(out.read_text())["benchmarks"]] == ["gw0", "gw1"]


def test_cuda_graph_capture_runs_on_the_timers_device(monkeypatch):
    import contextlib

    from mbs_layers.sweep import timer as timer_mod

    current, seen = [None], []

    @contextlib.contextmanager
    def fake_device(device):
        before, current[0] = current[0], torch.device(device)
        try:
            yield
        finally:
            current[0] = before

    monkeypatch.setattr(timer_mod.torch.cuda, "device", fake_device)
    monkeypatch.setattr(timer_mod, "capture_graph", lambda fn: seen.append(current[0]) or fn)
    t = object.__new__(timer_mod.CudaTimer)
    t.device, t.warmup, t.repeats, t.graph_below_s = torch.device("cuda", 1), 0, 2, 1.0
    monkeypatch.setattr(t, "_time", lambda fn, repeats: [1e-6] * repeats)
    assert t.measure(lambda: None) == [1e-6, 1e-6]
    assert seen == [torch.device("cuda", 1)]
