"""``mbs history add|check``: keep kernel timings per commit and find the commit that slowed a kernel."""

from __future__ import annotations

HELP = "history of kernel timings across commits: add runs, check for regressions (change points)"


def add_arguments(parser) -> None:
    import argparse

    db = argparse.ArgumentParser(add_help=False)
    db.add_argument("--db", default="bench/history.db", help="history database (default bench/history.db)")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = sub.add_parser(
        "add", parents=[db], help="add result files as runs of one commit (the same run twice is a no-op)"
    )
    add.add_argument("results", nargs="+", help="sweep JSONL stores, pytest-benchmark JSON files or folders")
    add.add_argument("--commit", required=True, help="the commit the results were measured at")
    add.add_argument("--branch", help="the branch of that commit (kept for the record)")
    add.add_argument(
        "--date",
        help="when the run was measured, ISO 8601 (default: the pytest-benchmark "
        "JSON's datetime, else the file's modification time)",
    )
    chk = sub.add_parser(
        "check",
        parents=[db],
        help="find regressions: change points per series plus the newest run's "
        "pairwise test; exit 1 on a regression above the threshold",
    )
    chk.add_argument("--since", metavar="SHA", help="report only steps first seen at or after this commit")
    chk.add_argument("--last", type=int, metavar="N", help="report only steps first seen in the N newest commits")
    chk.add_argument(
        "--threshold", type=float, default=0.05, help="smallest slowdown that fails the check (default 0.05 = 5%%)"
    )
    chk.add_argument(
        "--alpha", type=float, default=0.01, help="level of the newest run's one-sided Mann-Whitney test (default 0.01)"
    )
    chk.add_argument(
        "--max-pvalue",
        type=float,
        default=None,
        help="significance level of a change point (default: the tuned one, see docs/reports.md)",
    )
    chk.add_argument(
        "--any-gpu",
        action="store_true",
        help="pool all GPUs into one series per point (default: another GPU's runs are never a baseline for this one)",
    )
    chk.add_argument("--all", action="store_true", help="print every step found, not only regressions")


def _add(args) -> int:
    from ..history.store import HistoryStore

    added, known = HistoryStore(args.db).add(args.results, commit=args.commit, branch=args.branch, date=args.date)
    print(f"{args.db}: {added} point(s) added for commit {args.commit[:12]}, {known} already there")
    return 0


def _check(args) -> int:
    import pandas as pd

    from ..history.check import check, readable
    from ..history.detect import Detector
    from ..history.store import HistoryStore

    detector = Detector() if args.max_pvalue is None else Detector(max_pvalue=args.max_pvalue)
    table = check(
        HistoryStore(args.db).frame(),
        since=args.since,
        last=args.last,
        threshold=args.threshold,
        alpha=args.alpha,
        any_gpu=args.any_gpu,
        detector=detector,
    )
    shown = table if args.all else table[table["verdict"] == "regression"]
    if not shown.empty:
        with pd.option_context("display.max_rows", None, "display.width", 250, "display.max_colwidth", 60):
            print(readable(shown.sort_values(["verdict", "metric", "kernel"])).to_string(index=False))
    counts = table["verdict"].value_counts()
    print(
        ", ".join(f"{counts.get(v, 0)} {v}" for v in ("regression", "improvement", "below threshold"))
        + f" (threshold {args.threshold:.1%})"
    )
    return 1 if counts.get("regression", 0) else 0


def main(args) -> int:
    return {"add": _add, "check": _check}[args.action](args)
