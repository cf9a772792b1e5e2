"""Equal-memory comparisons and honest ranking in the report: bytes axis, duplicates, intervals."""

import pandas as pd
import pytest
import torch

import mbs_layers as mbs
from mbs_layers.accuracy.memory import memory_fields, model_signature
from mbs_layers.records.files import hparams_key
from mbs_layers.report import analysis as an


def summary_of(rows):
    """Accuracy records (one per seed) as load_results presents them, summarised."""
    df = pd.DataFrame(rows)
    return an.accuracy_summary(df.assign(hparams_key=df["hparams"].map(hparams_key)))


def rec(fmt, params, value, seed, *, n=100, storage_fraction=None, signature=None, **extra):
    return {
        "experiment": "pretrain",
        "config_id": "c",
        "metric": "test_accuracy",
        "format": fmt,
        "hparams": {"p": params},
        "in_features": n,
        "out_features": n,
        "param_count": params,
        "param_fraction": params / n**2,
        "storage_fraction": storage_fraction or params / n**2,
        "storage_bytes": 4 * params,
        "model_signature": signature,
        "value": value,
        "seed": seed,
        "status": "ok",
        **extra,
    }


def test_the_recommendation_budgets_bytes_not_parameters():
    # unstructured at 40% of the parameters stores an index per value: 80% of dense bytes
    rows = [rec("unstructured", 4000, v, s, storage_fraction=0.8) for s, v in enumerate((0.90, 0.91, 0.92))]
    rows += [rec("lowrank", 4500, v, s) for s, v in enumerate((0.80, 0.81, 0.82))]
    summary = summary_of(rows)
    by_bytes = an.recommend(summary, an.ACCURACY_GROUP, budgets=(0.5,)).iloc[0]
    by_params = an.recommend(summary, an.ACCURACY_GROUP, budgets=(0.5,), axis="params").iloc[0]
    assert by_bytes["format"] == "lowrank" and by_params["format"] == "unstructured"
    with pytest.raises(ValueError, match="axis"):
        an.recommend(summary, an.ACCURACY_GROUP, budgets=(0.5,), axis="flops")


def test_overlapping_intervals_are_reported_as_not_separable():
    close = [rec("a", 4000, v, s) for s, v in enumerate((0.90, 0.92, 0.94))]
    close += [rec("b", 4000, v, s) for s, v in enumerate((0.89, 0.91, 0.93))]
    far = [rec("c", 4000, v, s) for s, v in enumerate((0.50, 0.51, 0.52))]
    pick = an.recommend(summary_of(close + far), an.ACCURACY_GROUP, budgets=(0.5,)).iloc[0]
    assert pick["format"] == "a" and pick["not_separable_from"] == ["b"]
    assert "not separable from b" in pick["rule"]
    alone = an.recommend(summary_of(close[:3] + far), an.ACCURACY_GROUP, budgets=(0.5,)).iloc[0]
    assert alone["format"] == "a" and alone["not_separable_from"] == [] and "separable" not in alone["rule"]
    single = an.recommend(summary_of([close[0], far[0]]), an.ACCURACY_GROUP, budgets=(0.5,)).iloc[0]
    assert "one seed" in single["rule"]


def test_duplicate_models_are_marked_and_counted_once():
    sig = "64x64: block-lowrank(rows/8, cols/8, rank 1)"
    rows = [rec("btt", 1024, v, s, signature=sig) for s, v in enumerate((0.80, 0.81, 0.82))]
    rows += [rec("monarch", 1024, v, s, signature=sig) for s, v in enumerate((0.80, 0.81, 0.82))]
    rows += [rec("lowrank", 1024, v, s) for s, v in enumerate((0.70, 0.71, 0.72))]
    summary = summary_of(rows).set_index("format")
    assert summary.loc["monarch", "duplicate_of"] == "btt" and pd.isna(summary.loc["btt", "duplicate_of"])
    pick = an.recommend(summary.reset_index(), an.ACCURACY_GROUP, budgets=(0.5,)).iloc[0]
    assert pick["format"] == "btt" and pick["not_separable_from"] == []  # its twin is not a rival


def test_torn_writes_do_not_count_in_the_report():
    rows = [rec("a", 4000, 0.9, 0, write="w1", write_size=1), rec("b", 4000, 0.5, 0, write="w2", write_size=2)]
    assert list(summary_of(rows)["format"]) == ["a"]


@pytest.mark.parametrize("n", [64, 256])
def test_declared_twins_are_the_same_model(n):
    """BTT rank 1 and Monarch √n blocks (and Kronecker vs 2-core TT rank 1): equal signatures,
    equal parameter counts and the same best approximation of a random matrix."""
    k = int(n**0.5)
    pairs = [(("btt", {"rank": 1}), ("monarch", {"nblocks": k})), (("kronecker", {}), ("tt", {"cores": 2, "rank": 1}))]
    weight = torch.randn(n, n, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    for (a, hp_a), (b, hp_b) in pairs:
        assert model_signature(a, [(n, n, hp_a)]) == model_signature(b, [(n, n, hp_b)]) is not None
        la, lb = mbs.approximate(a, weight, **hp_a), mbs.approximate(b, weight, **hp_b)
        assert la.param_count() == lb.param_count()
        assert torch.allclose(la.dense_weight(), lb.dense_weight(), atol=1e-8)
    assert model_signature("btt", [(n, n, {"rank": 2})]) != model_signature("monarch", [(n, n, {"nblocks": k})])
    assert model_signature("unstructured", [(n, n, {"density": 0.5})]) is None


def test_memory_fields_count_indices():
    layer = mbs.build("unstructured", 64, 64, density=0.25)
    fields = memory_fields("unstructured", [(64, 64, layer.hparams)], layer.param_count(), layer.storage_bytes(), 4)
    assert fields["param_fraction"] == pytest.approx(0.25, abs=0.01)
    assert fields["storage_bytes"] == layer.storage_bytes() > 4 * layer.param_count()
    assert fields["storage_fraction"] == pytest.approx(layer.storage_bytes() / (4 * 64 * 64))


@pytest.mark.parametrize("axis", ["bytes", "params"])
def test_report_page_shows_intervals_and_not_separable(tmp_path, axis):
    from mbs_layers.records import RecordStore
    from mbs_layers.report import build_report

    store = RecordStore(tmp_path / "acc.jsonl")
    store.append_many(
        [
            rec(f, 4000, v, s)
            for f, values in (("a", (0.90, 0.92, 0.94)), ("b", (0.89, 0.91, 0.93)))
            for s, v in enumerate(values)
        ]
    )
    html = build_report([store.path], tmp_path / "r.html", axis=axis).read_text()
    assert "not separable from b" in html and "± 0.05" in html
    with pytest.raises(ValueError, match="axis"):
        build_report([store.path], tmp_path / "r.html", axis="flops")
