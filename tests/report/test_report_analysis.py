"""The numbers behind the report: Pareto fronts, recommendation rule, implied peaks, GPU state."""

import random

import pandas as pd
import pytest
from synthetic_records import PEAK_BYTES, PEAK_FLOPS, accuracy_record, kernel_record, synthetic_sweep

from mbs_layers.records.files import hparams_key
from mbs_layers.report import analysis as an


def test_pareto_front_is_exactly_the_non_dominated_points():
    rnd = random.Random(0)  # x has ties, y values are distinct
    df = pd.DataFrame({"x": [rnd.randint(0, 20) for _ in range(60)], "y": [rnd.random() for _ in range(60)]})
    for sign, maximize in ((1, False), (-1, True)):
        front = an.pareto_front(df, "x", "y", maximize_y=maximize)
        dominated = {i for i in df.index for j in df.index if df.x[j] <= df.x[i] and sign * df.y[j] < sign * df.y[i]}
        assert set(front.index) == set(df.index) - dominated
        assert list(front["x"]) == sorted(front["x"])


def joined_case(points, *, metric="rel_error", n=100):
    """A join-shaped frame: (format, param_count, metric value, speedup vs dense) per point."""
    rows = [
        {
            "experiment": "projection",
            "config_id": "-",
            "source": "gaussian",
            "metric": metric,
            "in_features": n,
            "out_features": n,
            "format": f,
            "hparams_key": hparams_key({"k": i}),
            "param_count": p,
            "value_mean": v,
            "device": "gpu",
            "dtype": "float16",
            "pass": "fwd",
            "tokens": 64,
            "speedup_vs_dense": s,
            "median_s": 1e-3 / s,
        }
        for i, (f, p, v, s) in enumerate(points)
    ]
    return pd.DataFrame(rows)


def frame(records):
    """Records as load_results presents them (with ``hparams_key``)."""
    df = pd.DataFrame(records)
    return df.assign(hparams_key=df["hparams"].map(hparams_key))


GROUP = [*an.ACCURACY_GROUP, *an.SETTING, "tokens"]


def test_recommendation_is_lowest_error_among_formats_at_least_as_fast_as_dense():
    case = joined_case(
        [
            ("unstructured", 5000, 0.30, 0.2),  # best error, far slower than dense
            ("monarch", 5000, 0.50, 1.5),  # the pick at 50%: best error among the fast ones
            ("lowrank", 4000, 0.60, 3.0),  # fastest, worse error
            ("blast", 6000, 0.10, 2.0),  # above the 50% budget: never eligible
            ("lowrank", 900, 0.90, 4.0),  # the only one within 10%
        ]
    )
    rec = an.recommend(case, GROUP, budgets=(0.5, 0.1, 0.05)).set_index("budget")
    assert rec.loc[0.5, "format"] == "monarch"
    assert rec.loc[0.5, "rule"] == "lowest error among formats at least as fast as dense"
    assert rec.loc[0.1, "format"] == "lowrank" and rec.loc[0.1, "param_count"] == 900
    assert pd.isna(rec.loc[0.05, "format"]) and rec.loc[0.05, "rule"] == "no format fits the budget"


def test_recommendation_falls_back_to_lowest_error_when_nothing_beats_dense():
    case = joined_case([("unstructured", 5000, 0.30, 0.2), ("monarch", 5000, 0.50, 0.9)])
    rec = an.recommend(case, GROUP, budgets=(0.5,)).iloc[0]
    assert rec["format"] == "unstructured" and rec["rule"] == "none as fast as dense: lowest error"


def test_recommendation_maximises_accuracy_metrics():
    case = joined_case([("monarch", 5000, 0.70, 1.2), ("lowrank", 5000, 0.80, 1.1)], metric="test_accuracy")
    assert an.recommend(case, GROUP, budgets=(0.5,)).iloc[0]["format"] == "lowrank"


def test_recommendation_from_one_kind_only():
    accuracy_only = joined_case([("monarch", 5000, 0.5, 1), ("lowrank", 5000, 0.4, 1)]).drop(
        columns=["speedup_vs_dense", "median_s"]
    )
    rec = an.recommend(accuracy_only, an.ACCURACY_GROUP, budgets=(0.5,)).iloc[0]
    assert (rec["format"], rec["rule"]) == ("lowrank", "lowest error")
    speed_only = frame(synthetic_sweep(widths=(256,), tokens=(4096,)))
    rec = an.recommend(speed_only, [*an.SHAPE, *an.SETTING, "tokens"], budgets=(0.5,)).iloc[0]
    within = speed_only[speed_only["param_count"] <= 0.5 * 256 * 256]
    assert rec["rule"] == "fastest" and rec["speedup"] == within["speedup_vs_dense"].max()


def test_join_matches_format_hparams_and_shape_only_on_ok_points():
    kernels = frame(
        [kernel_record("lowrank", {"rank": 8}, n=64, tokens=t) for t in (16, 32)]
        + [kernel_record("lowrank", {"rank": 4}, n=64, status="skipped: test")]
    )
    acc = frame(
        [accuracy_record("lowrank", {"rank": r}, n=64) for r in (4, 8)]
        + [accuracy_record("lowrank", {"rank": 8}, n=128)]
    )
    joined = an.join_accuracy_kernel(an.accuracy_summary(acc), kernels)
    assert sorted(joined["tokens"]) == [16, 32]
    assert set(joined["hparams_key"]) == {hparams_key({"rank": 8})} and set(joined["in_features"]) == {64}


def test_implied_peaks_recover_the_roofline_the_records_were_scored_against():
    peaks = an.implied_peaks(frame(synthetic_sweep(widths=(1024,), tokens=(16, 4096))))
    assert len(peaks) == 1
    assert peaks["peak_tflops"].iloc[0] == pytest.approx(PEAK_FLOPS / 1e12)
    assert peaks["peak_tbps"].iloc[0] == pytest.approx(PEAK_BYTES / 1e12)


def test_datasheet_peaks_and_device_kinds():
    assert an.datasheet_peaks("NVIDIA A100-SXM4-80GB", "bfloat16") == (312.0, 2.04)
    assert an.datasheet_peaks("NVIDIA A100-SXM4-40GB", "float32") == (19.5, 1.56)
    assert an.datasheet_peaks("NVIDIA H100 80GB HBM3", "float16") == (989.0, 3.35)
    assert an.datasheet_peaks("cpu", "float32") is None
    assert an.is_gpu_device("NVIDIA H100 80GB HBM3") and not an.is_gpu_device("cpu")


def test_budget_tiers_and_speedup_grid_take_the_best_in_a_tier():
    assert [an.budget_tier(f) for f in (0.5, 0.49, 0.24, 0.051, 0.003, 1.0)] == [0.5, 0.5, 0.25, 0.1, 0.01, 1.0]
    records = [kernel_record("lowrank", {"rank": r}, n=100, speedup_vs_dense=s) for r, s in ((24, 1.5), (20, 2.0))]
    grid = an.speedup_grid(frame(records + [kernel_record("dense", n=100, speedup_vs_dense=1.0)]))
    assert len(grid) == 1 and grid["tier"].iloc[0] == 0.5 and grid["speedup_vs_dense"].iloc[0] == 2.0


def test_gpu_state_counts_throttled_records():
    hot = kernel_record("dense")
    hot["nvml"] = {**hot["nvml"], "throttled": True, "temperature_c": 90}
    cpu = kernel_record("dense", device="cpu")
    state = an.gpu_state(frame([kernel_record("dense"), hot, cpu])).set_index("device")
    assert state.loc["cpu", "kind"] == "CPU" and state.loc["cpu", "with_nvml"] == 0
    gpu = state.loc["NVIDIA H100 80GB HBM3"]
    assert (gpu["kind"], gpu["records"], gpu["throttled"]) == ("GPU", 2, 1)
    assert gpu["temperature_c"] == "72.5 (55–90)"
    assert an.is_throttled({"clocks_event_reasons": ["hw_slowdown"]})
    assert not an.is_throttled({"clocks_event_reasons": []}) and not an.is_throttled(None)


def test_summary_keeps_results_only_and_join_keeps_the_fastest_backend():
    acc = frame(
        [accuracy_record("lowrank", {"rank": 8}, n=64, value=v, seed=s) for s, v in ((0, 0.4), (1, 0.6))]
        + [
            accuracy_record("lowrank", {"rank": 8}, n=64, value=0.9, epoch=1),  # a curve point
            accuracy_record("lowrank", {"rank": 8}, n=64, value=None, seed=2, status="failed: nan"),
        ]
    )
    summary = an.accuracy_summary(acc)
    assert len(summary) == 1 and summary["value_mean"].iloc[0] == pytest.approx(0.5)
    assert summary["seeds"].iloc[0] == 2
    kernels = frame(
        [
            kernel_record("lowrank", {"rank": 8}, n=64, backend=b, median_s=t)
            for b, t in (("torch", 2e-4), ("triton", 1e-4))
        ]
    )
    joined = an.join_accuracy_kernel(summary, kernels)
    assert list(joined["backend"]) == ["triton"]


def test_nvml_fields_all_null_count_as_no_state():
    record = kernel_record("dense", device="cpu: x86_64", nvml=dict.fromkeys(("sm_clock_mhz", "throttled")))
    state = an.gpu_state(frame([record])).iloc[0]
    assert (state["kind"], state["with_nvml"], state["throttled"]) == ("CPU", 0, 0)


def test_report_and_sweep_read_the_one_datasheet_table():
    from mbs_layers.sweep.peaks import datasheet_peaks as sweep_sheet

    for name in ("NVIDIA A100-SXM4-80GB", "NVIDIA A100-SXM4-40GB", "NVIDIA H100 80GB HBM3"):
        sheet = sweep_sheet(name)
        for dtype, rate in sheet["flops"].items():
            assert an.datasheet_peaks(name, dtype) == pytest.approx((rate / 1e12, sheet["bandwidth"] / 1e12))


def test_whole_model_records_are_budgeted_by_their_param_fraction():
    """A ViT record names one layer's in/out but counts every replaced layer's params."""
    import pandas as pd

    from mbs_layers.report.analysis import recommend

    df = pd.DataFrame(
        [
            {
                "experiment": "pretrain",
                "source": "digits",
                "metric": "test_accuracy",
                "in_features": 64,
                "out_features": 64,
                "format": f,
                "hparams_key": "{}",
                "param_count": n,
                "param_fraction": frac,
                "value_mean": acc,
            }
            for f, n, frac, acc in [
                ("lowrank", 13824, 0.24, 0.93),
                ("monarch", 12288, 0.21, 0.96),
                ("dense", 57344, 1.0, 0.97),
            ]
        ]
    )
    rec = recommend(df, ["experiment", "source", "metric", "in_features", "out_features"], budgets=(0.25,))
    assert rec["format"].tolist() == ["monarch"]
