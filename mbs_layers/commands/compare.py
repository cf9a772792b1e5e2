"""``mbs compare BASE NEW``: flag kernel-speed regressions; exit 1 on any, 2 if nothing compares."""
from __future__ import annotations

HELP = "compare kernel timings of two result files and flag regressions (noise-aware)"

SHOWN = ["verdict", "format", "hparams_key", "in_features", "out_features", "tokens", "dtype", "pass",
         "backend", "device", "base_ms", "new_ms", "ratio", "p_value"]


def add_arguments(parser) -> None:
    parser.add_argument("base", help="baseline results (pytest-benchmark JSON or JSONL store)")
    parser.add_argument("new", help="new results to check against the baseline")
    parser.add_argument("--threshold", type=float, default=0.05,
                        help="minimum slowdown of the median counted as a regression (default 0.05 = 5%%)")
    parser.add_argument("--alpha", type=float, default=0.01,
                        help="significance level of the one-sided Mann-Whitney U test (default 0.01)")
    parser.add_argument("--all", action="store_true", help="print every compared point, not only changes")


def main(args) -> int:
    import pandas as pd

    from ..compare import VERDICTS, compare_files

    table, missing = compare_files(args.base, args.new, threshold=args.threshold, alpha=args.alpha)
    for device, dtype in missing:
        print(f"no baseline for {device} / {dtype}: not compared")
    if table.empty:
        print("nothing to compare: no ok kernel point is in both files on the same GPU and dtype")
        return 2
    shown = table if args.all else table[table["verdict"].isin(["regression", "improvement"])]
    if not shown.empty:
        with pd.option_context("display.max_rows", None, "display.width", 200):
            table_text = (shown.sort_values("ratio", ascending=False)[SHOWN]
                          .rename(columns={"hparams_key": "hparams"})
                          .to_string(index=False, float_format="{:.4g}".format))
            print(table_text)
    counts = table["verdict"].value_counts()
    print(", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS)
          + f" (threshold {args.threshold:.0%}, alpha {args.alpha})")
    return 1 if counts.get("regression", 0) else 0
