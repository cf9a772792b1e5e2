"""``mbs history check``: find the commits where a kernel got slower (or used more energy).

Two tests per series (see :mod:`.series`):

* change points by E-divisive means (:mod:`.detect`) over the whole history: they find a step
  even when no single pair of runs is conclusive, once ``min_segment`` commits follow it;
* the pairwise Mann-Whitney test of :func:`mbs_layers.compare.classify` between the newest
  commit's raw repeats and the previous commit's, which covers a step at the newest commit.
  Repeats within one run do not show run-to-run noise (clocks, thermals, neighbours), so a
  pairwise verdict stands only if the newest value is also outside the spread of the earlier
  commits since the last change point (:func:`beyond_run_to_run_noise`), once there are
  ``MIN_HISTORY`` of them.

A finding is a **regression** when the step raises the value by more than ``threshold``, an
**improvement** when it lowers it by as much, and ``below threshold`` otherwise.
"""

from __future__ import annotations

import math
import statistics

import pandas as pd

from ..compare import classify
from .detect import Detector
from .series import commit_order, label, resolve_commit, series

COLUMNS = [
    "verdict",
    "metric",
    "gpu",
    "dtype",
    "backend",
    "kernel",
    "found_by",
    "first_bad_commit",
    "step",
    "confidence",
    "p_value",
    "point",
]
SHOWN = [
    "verdict",
    "metric",
    "kernel",
    "dtype",
    "backend",
    "gpu",
    "found_by",
    "first_bad_commit",
    "step",
    "confidence",
    "p_value",
]


MIN_HISTORY = 3


def beyond_run_to_run_noise(earlier: list[float], newest: float, *, slower: bool) -> float | None:
    """One-sided p-value of a t prediction test that ``newest`` is above (``slower``) or below the
    spread of the ``earlier`` per-commit values; None with fewer than ``MIN_HISTORY`` of them."""
    from scipy.stats import t

    if len(earlier) < MIN_HISTORY:
        return None
    mean, spread = statistics.fmean(earlier), statistics.stdev(earlier)
    if spread == 0:
        return 0.0 if (newest > mean) == slower and newest != mean else 1.0
    score = (newest - mean) / (spread * math.sqrt(1 + 1 / len(earlier)))
    return float(t.sf(score, len(earlier) - 1) if slower else t.cdf(score, len(earlier) - 1))


def verdict(step: float, threshold: float) -> str:
    if step > threshold:
        return "regression"
    if step < 1 / (1 + threshold) - 1:
        return "improvement"
    return "below threshold"


def recent_commits(commits: list[str], *, since: str | None = None, last: int | None = None) -> set[str]:
    """The commits whose findings are reported: from ``since`` on and among the ``last`` newest."""
    if last is not None and last < 1:
        raise ValueError(f"--last {last}: allowed values are integers >= 1")
    start = resolve_commit(commits, since) if since else 0
    if last is not None:
        start = max(start, len(commits) - last)
    return set(commits[start:])


def check(
    frame: pd.DataFrame,
    *,
    since: str | None = None,
    last: int | None = None,
    threshold: float = 0.05,
    alpha: float = 0.01,
    any_gpu: bool = False,
    detector: Detector | None = None,
) -> pd.DataFrame:
    """One row per significant step whose first bad commit is recent (``COLUMNS``)."""
    if threshold < 0:
        raise ValueError(f"--threshold {threshold}: allowed values are >= 0 (0.05 = 5%)")
    detector = detector or Detector()
    recent = recent_commits(commit_order(frame), since=since, last=last)
    rows = []

    def found(key, metric, by, sha, step, p_value):
        rows.append(
            {
                **key,
                "verdict": verdict(step, threshold),
                "metric": metric,
                "kernel": label(key["point"]),
                "found_by": by,
                "first_bad_commit": sha,
                "step": step,
                "confidence": 1 - p_value,
                "p_value": p_value,
            }
        )

    for key, metric, per_commit in series(frame, any_gpu=any_gpu):
        steps = detector.change_points(per_commit["value"])
        for cp in steps:
            if per_commit["commit_sha"][cp.index] in recent:
                found(key, metric, "change point", per_commit["commit_sha"][cp.index], cp.step, cp.p_value)
        newest = per_commit["commit_sha"].iloc[-1]
        if len(per_commit) >= 2 and newest in recent:
            ratio, p, pairwise = classify(
                per_commit["samples"].iloc[-2], per_commit["samples"].iloc[-1], threshold=threshold, alpha=alpha
            )
            earlier = list(per_commit["value"].iloc[max((cp.index for cp in steps), default=0) : -1])
            p_noise = beyond_run_to_run_noise(earlier, per_commit["value"].iloc[-1], slower=ratio >= 1)
            if pairwise in ("regression", "improvement") and (p_noise is None or p_noise < alpha):
                found(key, metric, "newest run", newest, ratio - 1, max(p, p_noise or 0.0))
    return pd.DataFrame(rows, columns=COLUMNS)


def readable(table: pd.DataFrame) -> pd.DataFrame:
    """The ``SHOWN`` columns of a :func:`check` table as text: short SHAs, steps in %, p in e-notation."""
    return table.assign(
        first_bad_commit=table["first_bad_commit"].str[:12],
        step=table["step"].map("{:+.1%}".format),
        confidence=table["confidence"].map("{:.4f}".format),
        p_value=table["p_value"].map("{:.1e}".format),
    )[SHOWN]
