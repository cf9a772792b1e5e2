"""Detection power of ``mbs history check``'s change-point detector on synthetic series.

Not a test: a measurement, summarised in docs/reports.md ("Regression history"). Each trial is
a series of ``--commits`` values (one per commit, Gaussian noise of ``--cv`` relative standard
deviation around 1). Step trials multiply the values from a uniformly random commit k in
1..commits-1 on by ``1 + --step``; a step is *found* when a change point lies within ±1 commit
of k. ``interior`` is the found share among the steps with at least ``min_segment`` commits on
either side (the only ones a change point may mark; a step at the newest commit is left to the
pairwise test of the newest run). Flat trials have no step; any change point there is a *false alarm*. ``gated`` is the
share of step trials that ``check`` would fail at ``--threshold`` (the estimated step must
exceed it). ``oracle`` is the share an ideal single-step locator (least squares, told that
there is exactly one step) puts within ±1 commit: no detector can beat it.

The last part runs the whole ``check`` (change points and the newest run's pairwise test on
raw repeats, ``--last 2`` as in CI) on step-free histories whose per-commit level moves by
``--cv`` from run to run while the repeats of one run spread by ``--repeat-cv``: the share of
histories failing the check is the CI job's false-failure rate per point checked.

    python bench/history_detection.py                # tuning grid at 2% CV, noise sweep, whole check
    python bench/history_detection.py --trials 500   # quicker
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time

import numpy as np
import pandas as pd

from mbs_layers.compare import classify
from mbs_layers.history.check import check
from mbs_layers.history.detect import MAX_PVALUE, MIN_SEGMENT, Detector
from mbs_layers.history.store import point_of

GRID_PVALUES = (1e-2, 1e-3, 3e-4, 1e-4, 1e-5)
GRID_SEGMENTS = (1, 2, 3)
SWEEP_CVS = (0.005, 0.01, 0.015, 0.02, 0.025, 0.03)


def series(rng, commits: int, cv: float, step: float) -> tuple[np.ndarray, int | None]:
    values = 1 + cv * rng.standard_normal(commits)
    if not step:
        return values, None
    k = int(rng.integers(1, commits))
    values[k:] *= 1 + step
    return values, k


def oracle_index(values: np.ndarray) -> int:
    """The single split with the least within-segment squared error."""
    n = len(values)
    csum, csq = np.cumsum(values), np.cumsum(values**2)
    k = np.arange(1, n)
    left = csq[k - 1] - csum[k - 1] ** 2 / k
    right = (csq[-1] - csq[k - 1]) - (csum[-1] - csum[k - 1]) ** 2 / (n - k)
    return int(k[np.argmin(left + right)])


def measure(
    detector: Detector, *, trials: int, commits: int, cv: float, step: float, threshold: float, seed: int
) -> dict:
    """Found, gated, oracle and false-alarm shares of ``trials`` step and ``trials`` flat series."""
    rng = np.random.default_rng(seed)
    found = gated = oracle = alarms = inside = inside_found = 0
    for _ in range(trials):
        values, k = series(rng, commits, cv, step)
        near = [cp for cp in detector.change_points(values) if abs(cp.index - k) <= 1]
        found += bool(near)
        if detector.min_segment <= k <= commits - detector.min_segment:
            inside += 1
            inside_found += bool(near)
        gated += any(cp.step > threshold for cp in near)
        oracle += abs(oracle_index(values) - k) <= 1
        alarms += bool(detector.change_points(series(rng, commits, cv, 0.0)[0]))
    return {
        "max_pvalue": detector.max_pvalue,
        "min_segment": detector.min_segment,
        "cv": cv,
        "found": found / trials,
        "interior": inside_found / max(inside, 1),
        "gated": gated / trials,
        "oracle": oracle / trials,
        "false_alarms": alarms / trials,
    }


def flat_history(rng, commits: int, cv: float, repeat_cv: float, repeats: int) -> pd.DataFrame:
    """A step-free history of one point, shaped like ``HistoryStore.frame()``."""
    point = point_of(
        {"format": "dense", "hparams": {}, "in_features": 1024, "out_features": 1024, "tokens": 256, "pass": "fwd"}
    )
    rows = []
    for i in range(commits):
        level = 1e-4 * (1 + cv * rng.standard_normal())
        samples = list(level * (1 + repeat_cv * rng.standard_normal(repeats)))
        rows.append(
            {
                "gpu": "GPU",
                "driver": "",
                "dtype": "float16",
                "point": point,
                "backend": "torch",
                "commit_sha": f"{i:040x}",
                "date": f"2026-01-01T00:00:{i:02d}",
                "branch": None,
                "median_s": float(np.median(samples)),
                "energy_j_per_call": None,
                "samples": samples,
            }
        )
    return pd.DataFrame(rows)


def check_false_failures(
    *, trials: int, commits: int, cv: float, repeat_cv: float, repeats: int, threshold: float, seed: int
) -> dict:
    """Share of step-free histories on which ``check(..., last=2)`` reports a regression, and by which test."""
    rng = np.random.default_rng(seed)
    failed = {"change point": 0, "newest run": 0, "any": 0, "bare pairwise": 0}
    for _ in range(trials):
        history = flat_history(rng, commits, cv, repeat_cv, repeats)
        table = check(history, last=2, threshold=threshold)
        found = set(table.loc[table["verdict"] == "regression", "found_by"])
        # the pairwise test alone, without the run-to-run guard
        failed["bare pairwise"] += (
            classify(history["samples"].iloc[-2], history["samples"].iloc[-1], threshold=threshold)[2] == "regression"
        )
        for by in found:
            failed[by] += 1
        failed["any"] += bool(found)
    return {
        "cv": cv,
        "repeat_cv": repeat_cv,
        "repeats": repeats,
        **{f"fails_{k.replace(' ', '_')}": v / trials for k, v in failed.items()},
    }


def show(row: dict) -> str:
    return (
        f"p<{row['max_pvalue']:<7g} seg>={row['min_segment']}  cv {row['cv']:.1%}  found {row['found']:6.1%}"
        f"  interior {row['interior']:6.1%}"
        f"  gated {row['gated']:6.1%}  oracle {row['oracle']:6.1%}  false alarms {row['false_alarms']:5.1%}"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=2000, help="step trials and flat trials per setting")
    parser.add_argument("--commits", type=int, default=30)
    parser.add_argument("--cv", type=float, default=0.02, help="noise (relative standard deviation) of the grid")
    parser.add_argument("--step", type=float, default=0.05)
    parser.add_argument("--threshold", type=float, default=0.05, help="check's --threshold for the gated share")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat-cv", type=float, default=0.005, help="spread of one run's repeats (whole check)")
    parser.add_argument("--repeats", type=int, default=10, help="repeats per run (whole check)")
    parser.add_argument("--no-grid", action="store_true", help="only the noise sweep with the defaults")
    parser.add_argument("--out", help="also write every row as JSON here")
    args = parser.parse_args(argv)
    common = {
        "trials": args.trials,
        "commits": args.commits,
        "step": args.step,
        "threshold": args.threshold,
        "seed": args.seed,
    }
    rows = []
    started = time.perf_counter()
    print(
        f"tuning grid: {args.commits} commits, {args.step:.0%} step, {args.trials} step + {args.trials} flat "
        "trials per setting",
        flush=True,
    )
    for pvalue, segment in [] if args.no_grid else itertools.product(GRID_PVALUES, GRID_SEGMENTS):
        rows.append(measure(Detector(pvalue, segment), cv=args.cv, **common))
        print(show(rows[-1]), flush=True)
    print(f"noise sweep with the defaults (max_pvalue {MAX_PVALUE:g}, min_segment {MIN_SEGMENT}):", flush=True)
    for cv in SWEEP_CVS:
        rows.append(measure(Detector(), cv=cv, **common))
        print(show(rows[-1]), flush=True)
    print(
        f"whole check (--last 2, threshold {args.threshold:.0%}) on step-free histories, repeats spread "
        f"{args.repeat_cv:.1%} x {args.repeats}:",
        flush=True,
    )
    for cv in SWEEP_CVS:
        rows.append(
            check_false_failures(
                trials=args.trials,
                commits=args.commits,
                cv=cv,
                repeat_cv=args.repeat_cv,
                repeats=args.repeats,
                threshold=args.threshold,
                seed=args.seed,
            )
        )
        print(
            f"run-to-run cv {cv:.1%}  job fails {rows[-1]['fails_any']:6.2%}  (change point "
            f"{rows[-1]['fails_change_point']:.2%}, newest run {rows[-1]['fails_newest_run']:.2%}; "
            f"bare pairwise test {rows[-1]['fails_bare_pairwise']:.2%})",
            flush=True,
        )
    print(f"{time.perf_counter() - started:.0f} s", file=sys.stderr)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"settings": vars(args), "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
