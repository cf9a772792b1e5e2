"""Projection experiment: agrees with theory, writes schema-conformant records, resumes."""

import json
import math

import pytest
import torch

import mbs_layers as mbs
from mbs_layers.accuracy import bert
from mbs_layers.accuracy.presets import ProjectionPreset
from mbs_layers.accuracy.projection import gaussian, output_errors, projection_table, run_projection
from mbs_layers.cli import main as cli_main
from mbs_layers.records import ACCURACY_KEYS, RecordStore, valid_status

SIZE = 40
PRESET = ProjectionPreset(sizes=(SIZE,), seeds=(0, 1), budgets=(0.05, 0.2, 0.5, 1.0), encoder_layers=())


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    store = run_projection(tmp_path_factory.mktemp("proj") / "p.jsonl", preset=PRESET, progress=False)
    return RecordStore(store).records()


def ok(records, fmt):
    return [r for r in records if r["format"] == fmt and r["status"] == "ok"]


def test_records_have_the_schema(records):
    assert {r["format"] for r in records} == set(mbs.FORMATS)
    for r in records:
        assert set(ACCURACY_KEYS) <= set(r) and valid_status(r["status"])
        assert r["experiment"] == "projection" and r["source"] == f"randn{SIZE}"
        if r["status"] == "ok":
            assert isinstance(r["hparams"], dict) and r["param_count"] <= r["budget"] * SIZE * SIZE
            assert r["metric"] == "rel_frobenius_error" and r["value"] == r["rel_error"] >= 0
            assert math.isclose(r["abs_error"], r["rel_error"] * gaussian(SIZE, r["seed"]).norm().item(), rel_tol=1e-5)


def test_lowrank_error_is_the_svd_tail(records):
    rows = ok(records, "lowrank")
    assert len(rows) == len(PRESET.seeds) * len(PRESET.budgets)
    for r in rows:
        s = torch.linalg.svdvals(gaussian(SIZE, r["seed"]).double())
        assert r["abs_error"] == pytest.approx(s[r["hparams"]["rank"] :].norm().item(), rel=1e-4)


def test_magnitude_pruning_is_the_lower_bound(records):
    """No format beats keeping the largest entries at its parameter count (thesis's reference)."""
    for r in (r for r in records if r["status"] == "ok"):
        w = gaussian(SIZE, r["seed"]).double().flatten()
        dropped = w.abs().sort().values[: w.numel() - r["param_count"]]
        assert r["abs_error"] >= dropped.norm().item() * (1 - 1e-5) - 1e-6, r["format"]


def test_unstructured_is_lowest_at_every_budget(records):
    if "unstructured" not in mbs.FORMATS:
        pytest.skip("unstructured format not registered")
    best = {(r["seed"], r["budget"]): r["rel_error"] for r in ok(records, "unstructured")}
    for r in (r for r in records if r["status"] == "ok"):
        assert best[r["seed"], r["budget"]] <= r["rel_error"] + 1e-6, r["format"]


def test_lowrank_light_at_least_as_good_as_lowrank(records):
    if "lowrank_light" not in mbs.FORMATS:
        pytest.skip("lowrank_light format not registered")
    plain = {(r["seed"], r["budget"]): r["rel_error"] for r in ok(records, "lowrank")}
    for r in ok(records, "lowrank_light"):
        assert r["rel_error"] <= plain[r["seed"], r["budget"]] + 1e-6


def test_resume_runs_only_missing_points(tmp_path):
    preset = ProjectionPreset(sizes=(16,), seeds=(0,), budgets=(0.25, 1.0), encoder_layers=(), formats=("lowrank",))
    store = run_projection(tmp_path / "p.jsonl", preset=preset, progress=False)
    lines = store.read_text().splitlines()
    assert len(lines) == 2
    store.write_text(lines[0] + "\n" + lines[1][:20])  # a run killed while writing its last point
    run_projection(store, preset=preset, progress=False)
    again = RecordStore(store).records()
    assert sorted(r["budget"] for r in again) == [0.25, 1.0]
    assert again[0] == json.loads(lines[0])


def test_table_lists_formats_and_not_run_points(records):
    text = projection_table(records)
    assert all(name in text for name in mbs.FORMATS)
    assert "not run" not in text or "skipped" in text


def test_mbs_project_prints_table_and_writes_csv(tmp_path, capsys):
    assert (
        cli_main(
            [
                "project",
                "--size",
                "24",
                "--seed",
                "3",
                "--out",
                str(tmp_path / "p.jsonl"),
                "--formats",
                "lowrank",
                "dense",
                "--no-progress",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "randn24" in out and "rank=" in out
    csv = (tmp_path / "p.csv").read_text().splitlines()
    assert len(csv) == 1 + len(RecordStore(tmp_path / "p.jsonl").records()) and "rel_error" in csv[0]


@pytest.mark.skipif(bert.missing_reason() is not None, reason=str(bert.missing_reason()))
def test_pretrained_weights_and_activation_error(tmp_path):
    preset = ProjectionPreset(
        sizes=(),
        budgets=(0.1, 1.0),
        encoder_layers=(5,),
        sentences=2,
        calibration_sentences=0,
        formats=("dense", "lowrank"),
    )
    records = RecordStore(run_projection(tmp_path / "p.jsonl", preset=preset, progress=False)).records()
    sources = {r["source"] for r in records}
    assert len(sources) == 6 and all(s.startswith("minilm/encoder.layer.5.") for s in sources)
    for r in records:
        assert r["status"] == "ok"
        assert r["metric"] in ("rel_frobenius_error", "rel_output_error", "rel_output_error_rownorm")
        assert (r["value"] == 0) == (r["format"] == "dense")
        # the projection is Frobenius-optimal in weight space: per row the output error may exceed 1
        assert r["value"] < (1 if r["metric"] != "rel_output_error_rownorm" else 2)
        assert r["storage_bytes"] == 4 * r["param_count"]  # float32 values, no indices


def test_row_normalised_output_error_is_robust_to_an_outlier_row():
    """One output row carries almost all of ‖WX‖²: the raw output error sees only that row."""
    gen = torch.Generator().manual_seed(0)
    weight, inputs = torch.randn(8, 6, generator=gen), torch.randn(50, 6, generator=gen)
    weight[3] *= 100.0
    diff = 0.5 * weight.clone()
    diff[3] = 0.0  # every row half wrong except the outlier, which is exact
    errors = output_errors(diff, weight, inputs)
    assert errors["rel_output_error"][1] < 0.02  # looks almost exact
    assert errors["rel_output_error_rownorm"][1] == pytest.approx(0.5 * math.sqrt(7 / 8), rel=1e-5)
    exact_raw = (inputs @ diff.T).norm() / (inputs @ weight.T).norm()
    assert errors["rel_output_error"][1] == pytest.approx(exact_raw.item(), rel=1e-6)


def test_unrepresentable_points_are_skipped_and_errors_recorded_as_failed(tmp_path, monkeypatch):
    preset = ProjectionPreset(sizes=(16,), budgets=(0.001, 0.5), encoder_layers=(), formats=("lowrank",))
    records = RecordStore(run_projection(tmp_path / "a.jsonl", preset=preset, progress=False)).records()
    status = {r["budget"]: r["status"] for r in records}
    assert status[0.5] == "ok"
    assert status[0.001].startswith("skipped: ") and "allowed params >=" in status[0.001]

    def broken(*args, **kwargs):
        raise RuntimeError("solver diverged")

    monkeypatch.setattr(mbs, "approximate", broken)
    records = RecordStore(run_projection(tmp_path / "b.jsonl", preset=preset, progress=False)).records()
    failed = [r for r in records if r["status"].startswith("failed: ")]
    assert len(failed) == 1 and "solver diverged" in failed[0]["status"] and failed[0]["value"] is None


def test_accuracy_and_sweep_share_the_budget_rule_and_the_environment():
    from mbs_layers.accuracy import runner
    from mbs_layers.sweep import environment as sweep_env
    from mbs_layers.sweep import plan

    assert runner.budget_hparams is plan.budget_hparams  # the accuracy/kernel join relies on it
    env = runner.environment()
    assert set(env) == {"commit", "torch", "python", "cuda"}
    assert env["commit"] == sweep_env.git_commit() and env["torch"] == sweep_env.versions()["torch"]
