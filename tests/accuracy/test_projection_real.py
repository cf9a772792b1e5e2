"""The projection experiment's `real` source: calibration activations passed as X where it matters."""

import pytest
import torch

import mbs_layers as mbs
from mbs_layers.accuracy import bert
from mbs_layers.accuracy.presets import ProjectionPreset
from mbs_layers.accuracy.projection import calibrated, encoder_sources, project_errors, real_sources, run_projection
from mbs_layers.records import RecordStore


def test_project_errors_passes_calibration_only_to_data_aware_formats(rng, recwarn):
    w = torch.randn(24, 32, generator=rng, dtype=torch.float64)
    mix = torch.randn(32, 32, generator=rng, dtype=torch.float64) * torch.logspace(0, -2, 32, dtype=torch.float64)
    calib, held_out = (torch.randn(400, 32, generator=rng, dtype=torch.float64) @ mix for _ in range(2))
    _, _, plain = project_errors("lowrank", {"rank": 4}, w, held_out, 0)
    _, _, aware = project_errors("lowrank", {"rank": 4}, w, held_out, 0, calib)
    assert aware["rel_output_error"][0] < plain["rel_output_error"][0]
    assert aware["rel_frobenius_error"][0] > plain["rel_frobenius_error"][0]  # it trades ‖W − Ŵ‖ for the output
    assert calibrated("monarch", calib) == {} and calibrated("lowrank", None) == {}
    project_errors("monarch", {"nblocks": 4}, w, held_out, 0, calib)
    assert not recwarn.list  # no "X is ignored" warning from the experiment


needs_model = pytest.mark.skipif(bert.missing_reason() is not None, reason=str(bert.missing_reason()))


@needs_model
def test_real_source_calibrates_and_beats_plain_svd_on_held_out_sentences():
    cfg = ProjectionPreset(sizes=(), encoder_layers=(5,), sentences=4, calibration_sentences=24)
    sources = real_sources(cfg, "cpu")
    assert len(sources) == 6 and all(s.name.startswith("real/minilm/encoder.layer.5.") for s in sources)
    for src, twin in zip(sources, encoder_sources(cfg, "cpu")):  # evaluated where minilm/ is
        assert src.uncalibrated == twin.name and torch.equal(src.inputs, twin.inputs)
    for src in sources:
        w, rank = src.weight(0), min(src.in_features, src.out_features) // 4
        assert src.calibration.shape[1] == src.inputs.shape[1] == src.in_features
        _, _, plain = project_errors("lowrank", {"rank": rank}, w, src.inputs, 0)
        _, _, aware = project_errors("lowrank", {"rank": rank}, w, src.inputs, 0, src.calibration)
        assert aware["rel_output_error"][0] < plain["rel_output_error"][0], src.name


@needs_model
def test_real_source_records(tmp_path):
    preset = ProjectionPreset(
        sizes=(),
        budgets=(0.25,),
        encoder_layers=(5,),
        sentences=2,
        calibration_sentences=4,
        formats=("fanin", "monarch"),
    )
    records = RecordStore(run_projection(tmp_path / "p.jsonl", preset=preset, progress=False)).records()
    real = [r for r in records if r["source"].startswith("real/")]
    assert len(real) == 6 * 2 * 3 and all(r["status"] == "ok" for r in real)  # layers × formats × metrics
    plain = {(r["source"], r["format"], r["metric"]): r["value"] for r in records if r["source"].startswith("minilm/")}
    for r in real:
        assert (r["calibration_tokens"] > 0) == mbs.FORMATS[r["format"]].data_aware
        twin = plain[r["source"].removeprefix("real/"), r["format"], r["metric"]]
        assert (r["value"] == twin) == (r["format"] == "monarch")  # the same held-out sentences
    assert all("calibration_tokens" not in r for r in records if r["source"].startswith("minilm/"))
    none = ProjectionPreset(sizes=(), budgets=(0.25,), encoder_layers=(5,), sentences=2, calibration_sentences=0)
    assert real_sources(none, "cpu") == []
