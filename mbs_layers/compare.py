"""Kernel-speed regression check between a baseline and a new set of results.

A point (same GPU, dtype, format, hyper-parameters, shape, tokens, backend and pass; a
point measured on another GPU or in another dtype is never compared) that ran ``ok`` on
both sides is a **regression** when all three hold:

* the new raw repeats (``samples_s``) are slower than the baseline's by a one-sided
  Mann–Whitney U test at level ``alpha`` (no assumption on the distribution),
* the median ratio new/base exceeds ``1 + threshold`` (a minimum effect size), and
* the shift leaves the **noise band**: the new run's 10th percentile lies above the
  baseline's 90th percentile (and above every baseline run's median where the file holds
  several runs of the point). Repeats within one run share the machine's state of the
  moment, so they understate run-to-run variation; a test on repeats alone flags about
  half the points of two runs of the same code on a shared CPU, so two further bands
  model run-to-run variation:

  - the **within-run band**: the new run's 10th percentile lies above the baseline's 90th
    (and above every baseline run's median where the file holds several runs of the point);
  - the **run-to-run band**: ``|log ratio|`` exceeds ``RUN_BAND_K`` (3) times the run-to-run
    scale estimated from the comparison itself: the spread of the points' log ratios around
    their common (median) shift, taken from the 25th percentile of the absolute deviations
    (``/ 0.3186``, the normal's), so it holds while up to three quarters of the points
    really changed. A uniform slowdown of every point keeps that spread small and is
    flagged; with fewer than ``RUN_BAND_MIN_POINTS`` tested points this band is not used.

Improvements are the mirror image. Points with too few repeats for the test ever to reach
``alpha`` are ``untested``. Lost points are regressions too: ``now failing`` (ok in the
baseline, failed or skipped now), ``missing`` (ok in the baseline, absent now, on a GPU and
dtype the new results cover) and ``new failure`` (failed now, absent from the baseline).
:func:`classify` is the reusable two-sample test.
"""

from __future__ import annotations

import math
import statistics

import pandas as pd

from .records.files import load_results
from .validation import check_float

POINT = ["device", "dtype", "format", "hparams_key", "in_features", "out_features", "tokens", "backend", "pass"]
LOST = ("now failing", "missing", "new failure")  # status verdicts; each fails the gate
VERDICTS = ("regression", *LOST, "improvement", "unchanged", "untested")
FAILING = ("regression", *LOST)
TESTED = ("regression", "improvement", "unchanged")
RUN_BAND_K = 3.0
RUN_BAND_MIN_POINTS = 8
HALF_NORMAL_Q25 = 0.3186  # 25th percentile of |N(0, 1)|


def check_settings(threshold: float, alpha: float) -> None:
    """``threshold`` finite and >= 0, ``alpha`` in (0, 1); ``ValueError`` naming the flag otherwise."""
    check_float("threshold", threshold, low=0.0, high=math.inf)
    if math.isinf(threshold):
        raise ValueError(f"threshold={threshold} is out of range: allowed a finite number >= 0")
    check_float("alpha", alpha, low=0.0, high=1.0, low_open=True)
    if alpha >= 1.0:
        raise ValueError(f"alpha={alpha} is out of range: allowed 0 < alpha < 1")


def noise_band(samples: list[float], run_medians=()) -> tuple[float, float]:
    """(low, high) of a side: the 10th/90th percentile of its repeats, widened to its runs' medians."""
    if len(samples) > 1:
        deciles = statistics.quantiles(samples, n=10, method="inclusive")
        low, high = deciles[0], deciles[-1]
    else:
        low = high = samples[0]
    return min([low, *run_medians]), max([high, *run_medians])


def run_to_run_sigma(ratios) -> float:
    """Robust scale of ``log(ratio)`` around the points' common shift (0.0 with too few points)."""
    logs = sorted(math.log(r) for r in ratios if r and r > 0 and math.isfinite(r))
    if len(logs) < RUN_BAND_MIN_POINTS:
        return 0.0
    centre = statistics.median(logs)
    deviations = [abs(x - centre) for x in logs]
    return statistics.quantiles(deviations, n=4, method="inclusive")[0] / HALF_NORMAL_Q25


def classify(
    base: list[float],
    new: list[float],
    *,
    threshold: float = 0.05,
    alpha: float = 0.01,
    min_samples: int = 3,
    base_runs=(),
    new_runs=(),
    run_sigma: float = 0.0,
) -> tuple[float, float | None, str]:
    """(median ratio new/base, p-value of the one-sided test in the ratio's direction, verdict).

    ``base_runs``/``new_runs``: medians of earlier runs of the point, which widen the
    within-run band; ``run_sigma``: the run-to-run scale of log ratios (:func:`run_to_run_sigma`).
    """
    check_settings(threshold, alpha)
    ratio = statistics.median(new) / statistics.median(base)
    # with n and m samples the one-sided Mann-Whitney p-value cannot go below 1/C(n+m, n):
    # if that floor is above alpha no slowdown could ever be flagged, so say "untested"
    if min(len(base), len(new)) < min_samples or 1 / math.comb(len(base) + len(new), len(base)) >= alpha:
        return ratio, None, "untested"
    from scipy.stats import mannwhitneyu

    slower = ratio >= 1.0
    p = float(mannwhitneyu(new, base, alternative="greater" if slower else "less").pvalue)
    (base_low, base_high), (new_low, new_high) = noise_band(base, base_runs), noise_band(new, new_runs)
    beyond_runs = abs(math.log(ratio)) > RUN_BAND_K * run_sigma
    if p < alpha and beyond_runs and slower and ratio > 1.0 + threshold and new_low > base_high:
        return ratio, p, "regression"
    if p < alpha and beyond_runs and not slower and ratio < 1.0 / (1.0 + threshold) and new_high < base_low:
        return ratio, p, "improvement"
    return ratio, p, "unchanged"


def _kernel(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["kind"] == "kernel"] if not df.empty else df


def _measured(df: pd.DataFrame) -> pd.DataFrame:
    """The last ok kernel record of each point, its samples (the median if none) and every run's median."""
    kernel = _kernel(df)
    kernel = kernel[kernel["status"] == "ok"] if not kernel.empty else kernel
    if kernel.empty:
        return pd.DataFrame(columns=[*POINT, "samples", "runs"])
    samples = [s if isinstance(s, list) and s else [m] for s, m in zip(kernel["samples_s"], kernel["median_s"])]
    kernel = kernel.assign(samples=samples, run=[statistics.median(s) for s in samples])
    runs = kernel.groupby(POINT, dropna=False)["run"].agg(list).rename("runs").reset_index()
    last = kernel.drop_duplicates(POINT, keep="last")[[*POINT, "samples"]]
    return last.merge(runs, on=POINT)


def _statuses(df: pd.DataFrame) -> dict[tuple, str]:
    """{point: status of its last kernel record}."""
    kernel = _kernel(df)
    if kernel.empty:
        return {}
    last = kernel.drop_duplicates(POINT, keep="last")
    return {tuple(row[:-1]): row[-1] for row in last[[*POINT, "status"]].itertuples(index=False)}


def _row(point: tuple, verdict: str, **values) -> dict:
    return {
        **dict(zip(POINT, point)),
        "base_ms": None,
        "new_ms": None,
        "ratio": None,
        "p_value": None,
        "verdict": verdict,
        "status": None,
        **values,
    }


def compare(
    base: pd.DataFrame, new: pd.DataFrame, *, threshold: float = 0.05, alpha: float = 0.01, min_samples: int = 3
) -> pd.DataFrame:
    """One row per point: timed in both (same GPU and dtype) with ratio, p-value and verdict, or lost."""
    check_settings(threshold, alpha)
    merged = _measured(base).merge(_measured(new), on=POINT, suffixes=("_base", "_new")).to_dict("records")
    run_sigma = run_to_run_sigma(
        statistics.median(r["samples_new"]) / statistics.median(r["samples_base"]) for r in merged
    )
    rows = []
    for rec in merged:
        ratio, p, verdict = classify(
            rec["samples_base"],
            rec["samples_new"],
            threshold=threshold,
            alpha=alpha,
            min_samples=min_samples,
            base_runs=rec["runs_base"][:-1],
            new_runs=rec["runs_new"][:-1],
            run_sigma=run_sigma,
        )
        rows.append(
            _row(
                tuple(rec[k] for k in POINT),
                verdict,
                base_ms=statistics.median(rec["samples_base"]) * 1e3,
                new_ms=statistics.median(rec["samples_new"]) * 1e3,
                ratio=ratio,
                p_value=p,
                status="ok",
            )
        )
    rows += _lost(_statuses(base), _statuses(new))
    return pd.DataFrame(rows, columns=[*POINT, "base_ms", "new_ms", "ratio", "p_value", "verdict", "status"])


def _lost(base: dict[tuple, str], new: dict[tuple, str]) -> list[dict]:
    """Rows for points that ran ok in the baseline but not now, and for failures new in ``new``."""
    covered = {(p[0], p[1]) for p in new}  # (GPU, dtype) pairs the new results measured
    baselined = {(p[0], p[1]) for p in base}
    rows = []
    for point, status in base.items():
        if status != "ok" or (point[0], point[1]) not in covered:
            continue
        if point not in new:
            rows.append(_row(point, "missing", status="absent"))
        elif new[point] != "ok":
            rows.append(_row(point, "now failing", status=new[point]))
    for point, status in new.items():
        if status.startswith("failed") and point not in base and (point[0], point[1]) in baselined:
            rows.append(_row(point, "new failure", status=status))
    return rows


ENERGY_VERDICTS = ("energy regression", "energy improvement", "unchanged")
ENERGY_FIELDS = ["energy_j_per_call", "energy_spread", "energy_resolution"]


def _energy(df: pd.DataFrame) -> pd.DataFrame:
    """The last ok kernel record of each point that has a measured energy per call."""
    kernel = _kernel(df)
    if kernel.empty or "energy_j_per_call" not in kernel:
        return pd.DataFrame(columns=[*POINT, *ENERGY_FIELDS])
    kernel = kernel[(kernel["status"] == "ok") & (pd.to_numeric(kernel["energy_j_per_call"], errors="coerce") > 0)]
    kernel = kernel.reindex(columns=list(dict.fromkeys([*kernel.columns, *ENERGY_FIELDS])))
    return kernel.drop_duplicates(POINT, keep="last")[[*POINT, *ENERGY_FIELDS]]


def compare_energy(base: pd.DataFrame, new: pd.DataFrame, *, threshold: float = 0.05) -> pd.DataFrame:
    """Energy per call of the points measured on both sides (same GPU and dtype), a separate gate.

    A point's energy comes from a few long windows (docs/benchmarking.md, "Energy"), not from
    many repeats, so no rank test applies. It is an **energy regression** when the ratio
    new/base of J/call exceeds ``1 + threshold`` *and* the change exceeds the noise both sides
    state: their window spreads (``energy_spread``) plus their counter resolutions
    (``energy_resolution``). Improvements are the mirror image.
    """
    check_settings(threshold, 0.5)
    merged = _energy(base).merge(_energy(new), on=POINT, suffixes=("_base", "_new"))
    rows = []
    for rec in merged.to_dict("records"):
        ratio = rec["energy_j_per_call_new"] / rec["energy_j_per_call_base"]
        noise = sum(
            float(rec[f"{f}_{side}"]) if pd.notna(rec[f"{f}_{side}"]) else 0.0
            for f in ("energy_spread", "energy_resolution")
            for side in ("base", "new")
        )
        verdict = "unchanged"
        if ratio > 1 + threshold and ratio - 1 > noise:
            verdict = "energy regression"
        elif ratio < 1 / (1 + threshold) and 1 - ratio > noise:
            verdict = "energy improvement"
        rows.append(
            {
                **{k: rec[k] for k in POINT},
                "base_mj": rec["energy_j_per_call_base"] * 1e3,
                "new_mj": rec["energy_j_per_call_new"] * 1e3,
                "ratio": ratio,
                "noise": noise,
                "verdict": verdict,
            }
        )
    return pd.DataFrame(rows, columns=[*POINT, "base_mj", "new_mj", "ratio", "noise", "verdict"])


def baselines_missing(base: pd.DataFrame, new: pd.DataFrame) -> list[tuple[str, str]]:
    """(GPU, dtype) pairs measured in ``new`` that the baseline has no records for."""
    pairs = lambda df: set(map(tuple, _measured(df)[["device", "dtype"]].itertuples(index=False)))
    return sorted(pairs(new) - pairs(base))


def compare_files(
    base_paths, new_paths, *, energy_threshold: float = 0.05, **kwargs
) -> tuple[pd.DataFrame, list[tuple[str, str]], pd.DataFrame]:
    """:func:`compare` on result files, the (GPU, dtype) pairs without a baseline, and
    :func:`compare_energy` (empty where neither side measured energy)."""
    base, new = load_results(base_paths), load_results(new_paths)
    return (
        compare(base, new, **kwargs),
        baselines_missing(base, new),
        compare_energy(base, new, threshold=energy_threshold),
    )
