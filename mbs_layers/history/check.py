"""``mbs history check``: find the commits where a kernel got slower (or used more energy).

Two tests per series (see :mod:`.series`):

* change points by E-divisive means (:mod:`.detect`) over the whole history: they find a step
  even when no single pair of runs is conclusive, once ``min_segment`` commits follow it;
* the pairwise Mann-Whitney test of :func:`mbs_layers.compare.classify` between the newest
  commit's raw repeats and the previous commit's, which covers a step at the newest commit.

A finding is a **regression** when the step raises the value by more than ``threshold``, an
**improvement** when it lowers it by as much, and ``below threshold`` otherwise.
"""
from __future__ import annotations

import pandas as pd

from ..compare import classify
from .detect import Detector
from .series import commit_order, label, resolve_commit, series

COLUMNS = ["verdict", "metric", "gpu", "dtype", "backend", "kernel", "found_by", "first_bad_commit",
           "step", "confidence", "p_value", "point"]
SHOWN = ["verdict", "metric", "kernel", "dtype", "backend", "gpu", "found_by", "first_bad_commit", "step",
         "confidence", "p_value"]


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


def check(frame: pd.DataFrame, *, since: str | None = None, last: int | None = None, threshold: float = 0.05,
          alpha: float = 0.01, any_gpu: bool = False, detector: Detector | None = None) -> pd.DataFrame:
    """One row per significant step whose first bad commit is recent (``COLUMNS``)."""
    if threshold < 0:
        raise ValueError(f"--threshold {threshold}: allowed values are >= 0 (0.05 = 5%)")
    detector = detector or Detector()
    recent = recent_commits(commit_order(frame), since=since, last=last)
    rows = []

    def found(key, metric, by, sha, step, p_value):
        rows.append({**key, "verdict": verdict(step, threshold), "metric": metric, "kernel": label(key["point"]),
                     "found_by": by, "first_bad_commit": sha, "step": step, "confidence": 1 - p_value,
                     "p_value": p_value})

    for key, metric, per_commit in series(frame, any_gpu=any_gpu):
        for cp in detector.change_points(per_commit["value"]):
            if per_commit["commit_sha"][cp.index] in recent:
                found(key, metric, "change point", per_commit["commit_sha"][cp.index], cp.step, cp.p_value)
        newest = per_commit["commit_sha"].iloc[-1]
        if len(per_commit) >= 2 and newest in recent:
            ratio, p, pairwise = classify(per_commit["samples"].iloc[-2], per_commit["samples"].iloc[-1],
                                          threshold=threshold, alpha=alpha)
            if pairwise in ("regression", "improvement"):
                found(key, metric, "newest run", newest, ratio - 1, p)
    return pd.DataFrame(rows, columns=COLUMNS)


def readable(table: pd.DataFrame) -> pd.DataFrame:
    """The ``SHOWN`` columns of a :func:`check` table as text: short SHAs, steps in %, p in e-notation."""
    return table.assign(first_bad_commit=table["first_bad_commit"].str[:12], step=table["step"].map("{:+.1%}".format),
                        confidence=table["confidence"].map("{:.4f}".format),
                        p_value=table["p_value"].map("{:.1e}".format))[SHOWN]
