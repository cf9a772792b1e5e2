"""``pytest bench/ --preset smoke --benchmark-json`` end to end (in a subprocess, on CPU)."""
import json
import subprocess
import sys

import pytest
import torch
from sweep_helpers import ROOT, clean_env

import mbs_layers as mbs
from mbs_layers.records import KERNEL_KEYS, RecordStore, point_key, valid_status
from mbs_layers.sweep.nvml import FIELDS as NVML_FIELDS
from mbs_layers.sweep.point import KEY_FIELDS, PASSES
from mbs_layers.sweep.presets import expand, load_preset


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """(benchmark JSON document, points by key, JSONL store records) of a smoke run."""
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "bench/", "--preset", "smoke", "--benchmark-json", str(out / "smoke.json"),
         "--store", str(out / "smoke.jsonl"), "-q", "-p", "no:cacheprovider"],
        cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    points = {p.key: p for p in expand(load_preset("smoke"), "cpu")}
    return json.loads((out / "smoke.json").read_text()), points, RecordStore(out / "smoke.jsonl").records()


def test_every_point_recorded_exactly_once(smoke):
    doc, points, _ = smoke
    keys = [point_key(b["extra_info"], KEY_FIELDS) for b in doc["benchmarks"]]
    assert sorted(keys) == sorted(points)


def test_records_have_the_full_schema(smoke):
    doc, _, _ = smoke
    for bench in doc["benchmarks"]:
        record = bench["extra_info"]
        assert set(record) == set(KERNEL_KEYS), sorted(set(record) ^ set(KERNEL_KEYS))
        assert valid_status(record["status"]), record["status"]
        assert record["pass"] in PASSES and isinstance(record["hparams"], dict)
        assert record["dtype"] == "float32" and record["device"].startswith("cpu")
        assert set(record["nvml"]) == set(NVML_FIELDS) and not any(record["nvml"].values())
        assert record["versions"]["torch"] == torch.__version__


def test_counts_equal_the_library(smoke):
    doc, points, _ = smoke
    for bench in doc["benchmarks"]:
        record = bench["extra_info"]
        if record["status"] != "ok":
            continue
        point = points[point_key(record, KEY_FIELDS)]
        layer = mbs.build(point.format, point.in_features, point.out_features, bias=False, **point.hparams)
        assert record["param_count"] == layer.param_count()
        assert record["storage_bytes"] == layer.storage_bytes()
        assert record["flops"] == layer.forward_flops(point.tokens) * (3 if point.pass_ == "fwd_bwd" else 1)


def test_stats_are_the_recorded_samples(smoke):
    doc, _, _ = smoke
    timed = [b for b in doc["benchmarks"] if b["stats"] is not None]
    assert timed
    for bench in timed:
        record, stats = bench["extra_info"], bench["stats"]
        assert stats["data"] == record["samples_s"] and len(record["samples_s"]) == 3
        assert stats["median"] == pytest.approx(record["median_s"])
        assert record["q10_s"] <= record["median_s"] <= record["q90_s"]
        assert record["tflops"] == pytest.approx(record["flops"] / record["median_s"] / 1e12)
        assert 0 < record["roofline_fraction"]


def test_speedups_compare_with_dense_of_the_same_run(smoke):
    doc, _, _ = smoke
    records = [b["extra_info"] for b in doc["benchmarks"] if b["extra_info"]["status"] == "ok"]
    dense = {(r["in_features"], r["out_features"], r["tokens"], r["pass"]): r["median_s"]
             for r in records if r["format"] == "dense"}
    for r in records:
        base = dense[(r["in_features"], r["out_features"], r["tokens"], r["pass"])]
        assert r["speedup_vs_dense"] == pytest.approx(base / r["median_s"])


def test_machine_info_has_versions_and_measured_peaks(smoke):
    info = smoke[0]["machine_info"]["mbs"]
    assert info["versions"]["torch"] == torch.__version__
    assert info["peaks"]["source"]["float32"] == "measured" and info["peaks"]["flops"]["float32"] > 0
    assert info["peaks"]["bandwidth"] > 0


def test_store_holds_the_same_records(smoke):
    doc, _, stored = smoke

    def canonical(records):
        return sorted(json.dumps(r, sort_keys=True) for r in records)

    assert canonical(stored) == canonical(b["extra_info"] for b in doc["benchmarks"])
