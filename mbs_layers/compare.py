"""Kernel-speed regression check between a baseline and a new set of results.

A point (same GPU, dtype, format, hyper-parameters, shape, tokens, backend and pass; a
point measured on another GPU or in another dtype is never compared) is a **regression**
when both hold:

* the new raw repeats (``samples_s``) are slower than the baseline's by a one-sided
  Mann–Whitney U test at level ``alpha`` (noise-aware: no assumption on the distribution), and
* the median ratio new/base exceeds ``1 + threshold`` (a minimum effect size, so a
  statistically clear but irrelevant 0.5% shift does not fail CI).

Improvements are the mirror image. Points with fewer than ``min_samples`` repeats on either
side cannot be tested and are reported as ``untested``.
"""
from __future__ import annotations

import math
import statistics

import pandas as pd

from .records.files import load_results

POINT = ["device", "dtype", "format", "hparams_key", "in_features", "out_features", "tokens",
         "backend", "pass"]
VERDICTS = ("regression", "improvement", "unchanged", "untested")


def classify(base: list[float], new: list[float], *, threshold: float = 0.05, alpha: float = 0.01,
             min_samples: int = 3) -> tuple[float, float | None, str]:
    """(median ratio new/base, p-value of the one-sided test in the ratio's direction, verdict)."""
    from scipy.stats import mannwhitneyu

    ratio = statistics.median(new) / statistics.median(base)
    # with n and m samples the one-sided Mann-Whitney p-value cannot go below 1/C(n+m, n):
    # if that floor is above alpha no slowdown could ever be flagged, so say "untested"
    if min(len(base), len(new)) < min_samples or 1 / math.comb(len(base) + len(new), len(base)) >= alpha:
        return ratio, None, "untested"
    slower = ratio >= 1.0
    p = float(mannwhitneyu(new, base, alternative="greater" if slower else "less").pvalue)
    if p < alpha and slower and ratio > 1.0 + threshold:
        return ratio, p, "regression"
    if p < alpha and not slower and ratio < 1.0 / (1.0 + threshold):
        return ratio, p, "improvement"
    return ratio, p, "unchanged"


def _measured(df: pd.DataFrame) -> pd.DataFrame:
    """The last ok kernel record of each point, with its samples (the median if none)."""
    kernel = df[(df["kind"] == "kernel") & (df["status"] == "ok")] if not df.empty else df
    if kernel.empty:
        return pd.DataFrame(columns=[*POINT, "samples"])
    samples = [s if isinstance(s, list) and s else [m] for s, m in zip(kernel["samples_s"], kernel["median_s"])]
    return kernel.assign(samples=samples).drop_duplicates(POINT, keep="last")[[*POINT, "samples"]]


def compare(base: pd.DataFrame, new: pd.DataFrame, *, threshold: float = 0.05, alpha: float = 0.01,
            min_samples: int = 3) -> pd.DataFrame:
    """One row per point present in both (same GPU and dtype), with ratio, p-value and verdict."""
    merged = _measured(base).merge(_measured(new), on=POINT, suffixes=("_base", "_new"))
    rows = []
    for rec in merged.to_dict("records"):
        ratio, p, verdict = classify(rec["samples_base"], rec["samples_new"], threshold=threshold,
                                     alpha=alpha, min_samples=min_samples)
        rows.append({**{k: rec[k] for k in POINT}, "base_ms": statistics.median(rec["samples_base"]) * 1e3,
                     "new_ms": statistics.median(rec["samples_new"]) * 1e3, "ratio": ratio,
                     "p_value": p, "verdict": verdict})
    return pd.DataFrame(rows, columns=[*POINT, "base_ms", "new_ms", "ratio", "p_value", "verdict"])


def baselines_missing(base: pd.DataFrame, new: pd.DataFrame) -> list[tuple[str, str]]:
    """(GPU, dtype) pairs measured in ``new`` that the baseline has no records for."""
    pairs = lambda df: set(map(tuple, _measured(df)[["device", "dtype"]].itertuples(index=False)))  # noqa: E731
    return sorted(pairs(new) - pairs(base))


def compare_files(base_paths, new_paths, **kwargs) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """:func:`compare` on result files, plus the (GPU, dtype) pairs without a baseline."""
    base, new = load_results(base_paths), load_results(new_paths)
    return compare(base, new, **kwargs), baselines_missing(base, new)
