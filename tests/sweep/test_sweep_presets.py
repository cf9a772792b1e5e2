"""Presets and the plan: packaged and user YAML files load and reject bad keys; the plan expands them
baselines-first without duplicates, each point carrying its resolved baselines."""

import pytest
from sweep_helpers import write_preset

import mbs_layers as mbs
from mbs_layers.sweep.plan import expand
from mbs_layers.sweep.point import Point
from mbs_layers.sweep.presets import PACKAGED, load_preset


def test_every_packaged_preset_loads():
    assert all(load_preset(name).name == name for name in PACKAGED)


@pytest.mark.parametrize("name", ["smoke", "default", "models"])  # full: the same, 5x longer
@pytest.mark.parametrize("device_type", ["cpu", "cuda"])
def test_packaged_presets_expand_without_duplicates(name, device_type):
    points = expand(load_preset(name), device_type)
    keys = [p.key for p in points]
    assert len(keys) == len(set(keys)) > 0
    index = {p.key: i for i, p in enumerate(points)}
    for i, point in enumerate(points):  # baselines are measured before the points compared with them
        for baseline in (point.dense, point.unstructured):
            # the plan's own point (carrying its baselines in turn), listed before this one
            assert baseline is None or (index[baseline.key] <= i and points[index[baseline.key]] is baseline)
        assert point.dense.format == "dense" and point.dense.pass_ == point.pass_


def test_models_preset_has_the_real_shapes():
    shapes = set(load_preset("models").shapes)
    assert {(768, 2304), (768, 3072), (3072, 768), (4096, 11008), (11008, 4096), (4096, 4096)} <= shapes


def test_user_preset_file(tmp_path):
    path = write_preset(
        tmp_path / "mine.yaml", shapes=[[48, 80]], widths=[32], tokens=[2, 3], passes=["fwd"], formats=["lowrank"]
    )
    preset = load_preset(path)
    assert preset.name == "mine" and preset.shapes == [(48, 80), (32, 32)]
    points = expand(preset, "cpu")
    comparators = {"unstructured"} & set(mbs.FORMATS)
    assert {p.format for p in points} == {"dense", "lowrank"} | comparators
    assert {(p.in_features, p.out_features, p.tokens) for p in points} == {
        (i, o, t) for i, o in [(48, 80), (32, 32)] for t in (2, 3)
    }


def test_budget_no_setting_fits_is_a_skipped_point(tmp_path):
    preset = load_preset(write_preset(tmp_path / "p.yaml", budgets=[0.5, 0.01], passes=["fwd"]))
    skipped = [p for p in expand(preset, "cpu") if p.skip_reason]
    assert [(p.format, p.hparams) for p in skipped] == [("lowrank", {})]
    assert "0.01" in skipped[0].skip_reason


@pytest.mark.parametrize(
    "overrides,named",
    [
        ({"colour": "red"}, "colour"),
        ({"dtypes": ["float64"]}, "dtypes"),
        ({"budgets": [0.0]}, "budgets"),
        ({"budgets": [1.5]}, "budgets"),
        ({"tokens": [0]}, "tokens"),
        ({"tokens": []}, "tokens"),
        ({"passes": ["bwd"]}, "passes"),
        ({"shapes": [[32]]}, "shapes"),
        ({"shapes": []}, "shapes"),
        ({"formats": "some"}, "formats"),
        ({"timer": {"repeats": 0}}, "timer.repeats"),
    ],
)
def test_bad_preset_raises_naming_the_key(tmp_path, overrides, named):
    with pytest.raises(ValueError, match=named):
        load_preset(write_preset(tmp_path / "bad.yaml", **overrides))


def test_unknown_preset_name_lists_the_packaged_ones(tmp_path):
    with pytest.raises(ValueError, match="preset.*smoke"):
        load_preset("nightly")
    with pytest.raises(ValueError, match="does not exist"):
        load_preset(tmp_path / "missing.yaml")


def test_point_key_survives_a_json_round_trip():
    import json

    from mbs_layers.records import point_key
    from mbs_layers.sweep.point import KEY_FIELDS

    point = Point("lowrank", {"rank": 4, "shape": (2, 3)}, 8, 8, 1, "float32", "torch", "fwd")
    assert point_key(json.loads(json.dumps(point.identity())), KEY_FIELDS) == point.key
