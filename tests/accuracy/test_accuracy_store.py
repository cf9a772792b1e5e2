"""The accuracy point loop: retry rule, atomic point writes, configuration in the point key."""

import json

import pytest

from mbs_layers.accuracy.presets import ProjectionPreset, config_id, get_preset, preset_config
from mbs_layers.accuracy.projection import run_projection
from mbs_layers.accuracy.runner import CannotRepresent, current_records, done_keys, run_points
from mbs_layers.records import RecordStore

KEY = ("experiment", "format", "seed")


def point(fmt, seed=0):
    return {"experiment": "unit", "format": fmt, "seed": seed, "in_features": 4, "out_features": 4, "metric": "m"}


def three_records(p):
    return [{**p, "hparams": {}, "param_count": 1, "value": float(i), "status": "ok", "part": i} for i in range(3)]


def test_failed_points_are_retried_skipped_ones_are_not(tmp_path):
    calls, oom_attempts = [], []

    def flaky(p):
        calls.append(p["format"])
        if p["format"] == "skip":
            raise CannotRepresent("no setting fits")
        if p["format"] == "bug":
            raise ValueError("a real bug that happens to be a ValueError")
        if p["format"] == "oom" and not oom_attempts:
            oom_attempts.append(1)
            raise RuntimeError("out of memory")
        return three_records(p)

    store = tmp_path / "s.jsonl"
    points = [point(f) for f in ("ok", "skip", "bug", "oom")]
    run_points(store, points, flaky, key_fields=KEY, desc="t", progress=False)
    status = {r["format"]: r["status"] for r in current_records(RecordStore(store), KEY)}
    assert status["skip"].startswith("skipped: ") and status["bug"].startswith("failed: ValueError")
    assert status["oom"].startswith("failed: RuntimeError")
    calls.clear()
    run_points(store, points, flaky, key_fields=KEY, desc="t", progress=False)
    assert sorted(calls) == ["bug", "oom"]  # the failed ones, and only those
    now = current_records(RecordStore(store), KEY)
    assert sorted(r["part"] for r in now if r["format"] == "oom") == [0, 1, 2]  # the retry replaced the failure
    assert {r["status"] for r in now if r["format"] == "oom"} == {"ok"}


def test_a_point_is_one_write_and_a_torn_write_does_not_count(tmp_path):
    store = tmp_path / "s.jsonl"
    run_points(store, [point("a"), point("b")], three_records, key_fields=KEY, desc="t", progress=False)
    lines = store.read_text().splitlines()
    assert len(lines) == 6 and len({json.loads(line)["write"] for line in lines}) == 2
    assert all(json.loads(line)["write_size"] == 3 for line in lines)
    store.write_text("\n".join(lines[:4]) + "\n")  # killed after the first of b's three lines
    assert done_keys(RecordStore(store), KEY) == {json.dumps({"experiment": "unit", "format": "a", "seed": 0})}
    ran = []
    run_points(
        store,
        [point("a"), point("b")],
        lambda p: ran.append(p["format"]) or three_records(p),
        key_fields=KEY,
        desc="t",
        progress=False,
    )
    assert ran == ["b"]
    now = current_records(RecordStore(store), KEY)
    assert sorted((r["format"], r["part"]) for r in now) == [(f, i) for f in "ab" for i in range(3)]


def test_append_many_is_one_fsynced_write(tmp_path, monkeypatch):
    """One write and one fsync per point, not one per record."""
    from mbs_layers import records

    synced = []
    monkeypatch.setattr(records.os, "fsync", lambda fd: synced.append(fd))
    store = RecordStore(tmp_path / "s.jsonl")
    store.append_many([{"a": 1}, {"a": 2}, {"a": 3}])
    assert len(synced) == 1 and [r["a"] for r in store] == [1, 2, 3]


def test_config_id_covers_settings_but_not_the_point_selection():
    base = ProjectionPreset()
    assert config_id("smoke", base) == config_id("smoke", get_preset("projection", base, seeds=(0, 1, 2)))
    assert config_id("smoke", base) != config_id("smoke", get_preset("projection", base, sentences=17))
    assert config_id("smoke", base) != config_id("default", base)
    assert preset_config(base, "smoke")["id"] == config_id("smoke", base)


def test_different_configurations_never_share_points(tmp_path):
    store = tmp_path / "p.jsonl"
    small = ProjectionPreset(sizes=(16,), budgets=(0.5,), encoder_layers=(), formats=("lowrank",))
    run_projection(store, preset=small, progress=False)
    run_projection(store, preset=small, progress=False)  # same configuration: nothing re-runs
    assert len(RecordStore(store).records()) == 1
    other = ProjectionPreset(sizes=(16,), budgets=(0.5,), encoder_layers=(), formats=("lowrank",), sentences=3)
    run_projection(store, preset=other, progress=False)  # another configuration: its own point
    records = RecordStore(store).records()
    assert len(records) == 2 and len({r["config_id"] for r in records}) == 2
    assert {r["config"]["sentences"] for r in records} == {16, 3}


@pytest.mark.parametrize(
    "selection, word",
    [
        ({"seeds": (-1,)}, "seeds"),
        ({"budgets": (0.0,)}, "budgets"),
        ({"budgets": (1.5,)}, "budgets"),
        ({"formats": ("nope",)}, "formats"),
        ({"seeds": ()}, "seeds"),
    ],
)
def test_bad_selection_raises_naming_it(selection, word):
    with pytest.raises(ValueError, match=word):
        get_preset("pretrain", "smoke", **selection)


@pytest.mark.parametrize(
    "argv, word",
    [
        (["--seeds", "0", "x"], "--seeds"),
        (["--budgets", "2"], "budgets"),
        (["--formats", "nope"], "formats"),
        (["--budgets", "half"], "--budgets"),
    ],
)
def test_cli_selection_errors_are_one_line(tmp_path, capsys, argv, word):
    from mbs_layers.cli import main as cli_main

    code = cli_main(["accuracy", "--experiment", "pretrain", "--out", str(tmp_path / "p.jsonl"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("mbs: error: ") and word in err and err.count("\n") == 1
    assert not (tmp_path / "p.jsonl").exists()


def test_cli_runs_the_selected_seeds_budgets_and_formats(tmp_path, capsys, monkeypatch):
    from mbs_layers.accuracy import presets
    from mbs_layers.accuracy.presets import PretrainPreset
    from mbs_layers.cli import main as cli_main

    tiny = PretrainPreset(patch=4, dim=8, depth=1, heads=2, epochs=1)
    monkeypatch.setitem(presets.PRESETS["pretrain"], "smoke", tiny)
    store = tmp_path / "p.jsonl"
    assert (
        cli_main(
            [
                "accuracy",
                "--experiment",
                "pretrain",
                "--out",
                str(store),
                "--no-progress",
                "--seeds",
                "0,1",
                "--budgets",
                "0.5",
                "--formats",
                "lowrank",
                "dense",
            ]
        )
        == 0
    )
    tests = [r for r in RecordStore(store) if r["metric"] == "test_accuracy"]
    assert sorted((r["format"], r["budget"], r["seed"]) for r in tests) == [
        ("dense", 1.0, 0),
        ("dense", 1.0, 1),
        ("lowrank", 0.5, 0),
        ("lowrank", 0.5, 1),
    ]
    assert "test_accuracy_ci95" in capsys.readouterr().out  # two seeds: an interval per row
