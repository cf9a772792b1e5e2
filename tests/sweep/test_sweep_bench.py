"""``pytest bench/ --preset smoke --benchmark-json`` end to end (in a subprocess, on CPU)."""

import json
import subprocess
import sys

import pytest
import torch
from sweep_helpers import ROOT, clean_env

import mbs_layers as mbs
from mbs_layers.records import KERNEL_KEYS, RecordStore, point_key, valid_status
from mbs_layers.records.files import UNTIMED_KEY
from mbs_layers.sweep.nvml import FIELDS as NVML_FIELDS
from mbs_layers.sweep.plan import expand
from mbs_layers.sweep.point import KEY_FIELDS, PASSES
from mbs_layers.sweep.presets import load_preset


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """(benchmark JSON document, points by key, JSONL store records) of a smoke run."""
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "bench/",
            "--preset",
            "smoke",
            "--benchmark-json",
            str(out / "smoke.json"),
            "--store",
            str(out / "smoke.jsonl"),
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    points = {p.key: p for p in expand(load_preset("smoke"), "cpu")}
    return json.loads((out / "smoke.json").read_text()), points, RecordStore(out / "smoke.jsonl").records()


def entries(doc):
    """Every point's entry: the timed ``benchmarks`` and the untimed (skipped/failed) ones."""
    return doc["benchmarks"] + doc[UNTIMED_KEY]


def test_every_point_recorded_exactly_once(smoke):
    doc, points, _ = smoke
    keys = [point_key(b["extra_info"], KEY_FIELDS) for b in entries(doc)]
    assert sorted(keys) == sorted(points)


def test_records_have_the_full_schema(smoke):
    doc, _, _ = smoke
    for bench in entries(doc):
        record = bench["extra_info"]
        assert set(record) == set(KERNEL_KEYS), sorted(set(record) ^ set(KERNEL_KEYS))
        assert valid_status(record["status"]), record["status"]
        assert record["pass"] in PASSES and isinstance(record["hparams"], dict)
        assert record["dtype"] == "float32" and record["device"].startswith("cpu")
        assert set(record["nvml"]) == set(NVML_FIELDS) and not any(record["nvml"].values())
        assert record["versions"]["torch"] == torch.__version__


def test_counts_equal_the_library(smoke):
    doc, points, _ = smoke
    for bench in entries(doc):
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
        # 10 repeats (MIN_CPU_REPEATS), far-out slow ones dropped (at most the top 3 of 10)
        assert stats["data"] == pytest.approx(record["samples_s"], rel=1e-9) and 7 <= len(record["samples_s"]) <= 10
        assert record["cpu_threads"] == 1 and isinstance(record["noisy"], bool)
        assert stats["median"] == pytest.approx(record["median_s"])
        assert record["q10_s"] <= record["median_s"] <= record["q90_s"]
        assert record["tflops"] == pytest.approx(record["flops"] / record["median_s"] / 1e12)
        assert 0 < record["roofline_fraction"]


def test_speedups_compare_with_dense_of_the_same_run(smoke):
    doc, _, _ = smoke
    records = [b["extra_info"] for b in doc["benchmarks"] if b["extra_info"]["status"] == "ok"]
    dense = {
        (r["in_features"], r["out_features"], r["tokens"], r["pass"]): r["median_s"]
        for r in records
        if r["format"] == "dense"
    }
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

    assert canonical(stored) == canonical(b["extra_info"] for b in entries(doc))


class RecordingLogger:
    """pytest-benchmark's logger interface, keeping the warnings its loader gives."""

    def __init__(self):
        self.warnings = []

    def warning(self, text, **_):
        self.warnings.append(text)

    def info(self, *_, **__):
        pass

    debug = info


def test_pytest_benchmark_loads_our_json_with_its_own_loader(smoke, tmp_path):
    from pytest_benchmark.storage.file import FileStorage

    doc, _, _ = smoke
    path = tmp_path / "0001_smoke.json"
    path.write_text(json.dumps(doc))
    logger = RecordingLogger()
    storage = FileStorage(str(tmp_path), logger=logger)
    loaded = list(storage.load_benchmarks(str(path)))
    assert not logger.warnings  # the loader drops a whole file with a warning when it cannot read it
    assert len(loaded) == len(doc["benchmarks"]) > 0 and doc[UNTIMED_KEY]
    assert all(b["median"] > 0 for b in loaded)
    assert all(
        isinstance(b["params"]["point"], str) and "UNSERIALIZABLE" not in b["params"]["point"]
        for b in doc["benchmarks"]
    )
    again = tmp_path / "0002_smoke.json"
    again.write_text(path.read_text())
    cli = "from pytest_benchmark.cli import main; main()"
    proc = subprocess.run(
        [sys.executable, "-c", cli, "compare", str(path), str(again)],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and doc["benchmarks"][0]["name"] in proc.stdout, proc.stdout + proc.stderr


def test_benchmark_compare_fail_end_to_end(smoke, tmp_path):
    """``--benchmark-compare`` against a saved smoke run whose first point was 1000x faster (and
    every other 1000x slower): pytest-benchmark itself names exactly that point a regression and
    exits 1 (raising its own PerformanceRegression, as it does for any suite)."""
    doc, _, _ = smoke
    baseline = json.loads(json.dumps(doc))
    for i, bench in enumerate(baseline["benchmarks"]):
        scale = 1e-3 if i == 0 else 1e3  # first point "was" much faster, every other much slower
        bench["stats"] = {
            k: v * scale
            if k in ("min", "max", "mean", "median", "stddev", "iqr", "q1", "q3", "ld15iqr", "hd15iqr", "total")
            else v
            for k, v in bench["stats"].items()
        }
        bench["stats"]["ops"] = 1 / bench["stats"]["mean"]
    path = tmp_path / "0001_baseline.json"
    path.write_text(json.dumps(baseline))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(ROOT / "bench" / "test_sweep.py"),
            "--preset",
            "smoke",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--benchmark-compare={path}",
            "--benchmark-compare-fail=median:100%",
        ],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )  # storage: tmp_path/.benchmarks
    out = proc.stdout + proc.stderr
    assert "INTERNALERROR" not in out, out[-4000:]  # the machine-info hook used to crash here
    # pytest-benchmark lists each failed check on a tab-indented line, then exits 1
    regressed = [line for line in out.splitlines() if line.startswith("\t") and "PercentageRegressionCheck" in line]
    assert proc.returncode == 1 and len(regressed) == 1, out[-4000:]
    assert baseline["benchmarks"][0]["name"] in regressed[0]
