"""The history as series: one value per commit for each (GPU, dtype, point, backend, metric).

Commits are ordered by the date of their first run (a later re-run of an old commit keeps its
place). Several runs of one commit are pooled: their raw repeats for the time, the mean for
energy. A series never mixes GPUs unless ``any_gpu`` is asked for, so another GPU's run never
becomes this one's baseline.
"""

from __future__ import annotations

import json
import statistics

import pandas as pd

SERIES = ["gpu", "dtype", "point", "backend"]
# metric -> (column of the database frame, whether its rows carry raw repeats for the pairwise test)
METRICS = {"time_s": ("median_s", True), "energy_j_per_call": ("energy_j_per_call", False)}


def commit_order(frame: pd.DataFrame) -> list[str]:
    """Every commit in the history, oldest first by the date of its first run."""
    return list(frame.groupby("commit_sha")["date"].min().sort_values(kind="stable").index)


def resolve_commit(commits: list[str], sha: str, flag: str = "--since") -> int:
    """Position of ``sha`` (a full or unambiguous abbreviated commit) in ``commits``."""
    matches = [i for i, c in enumerate(commits) if c.startswith(sha)] if sha else []
    if len(matches) != 1:
        what = "is not in the history" if not matches else "matches several commits"
        known = ", ".join(c[:12] for c in commits[-5:])
        raise ValueError(f"{flag} {sha!r} {what}; newest commits there: {known}")
    return matches[0]


def label(point: str) -> str:
    """A point's short human name: ``lowrank rank=16 1024x1024 t=256 fwd``."""
    p = json.loads(point)
    hp = " ".join(f"{k}={v}" for k, v in sorted((p.get("hparams") or {}).items()))
    return " ".join(
        x for x in (p["format"], hp, f"{p['in_features']}x{p['out_features']}", f"t={p['tokens']}", p["pass"]) if x
    )


def series(frame: pd.DataFrame, *, any_gpu: bool = False):
    """Yield ``(key, metric, per_commit)``: ``per_commit`` has one row per commit in history order
    with ``commit_sha``, ``value``, ``samples`` (raw repeats, pooled over runs) and ``gpus``."""
    order = {c: i for i, c in enumerate(commit_order(frame))}
    keys = [k for k in SERIES if not (any_gpu and k == "gpu")]
    for key, rows in frame.groupby(keys, sort=True):
        key = dict(zip(keys, key), **({"gpu": "any"} if any_gpu else {}))
        for metric, (column, has_samples) in METRICS.items():
            measured = rows[rows[column].notna()]
            if measured.empty:
                continue
            per_commit = []
            for sha, runs in measured.groupby("commit_sha"):
                samples = [s for run in runs["samples"] for s in run] if has_samples else list(runs[column])
                value = statistics.median(samples) if has_samples else statistics.fmean(samples)
                per_commit.append(
                    {"commit_sha": sha, "value": value, "samples": samples, "gpus": ", ".join(sorted(set(runs["gpu"])))}
                )
            yield (
                key,
                metric,
                pd.DataFrame(per_commit).sort_values("commit_sha", key=lambda s: s.map(order), ignore_index=True),
            )
