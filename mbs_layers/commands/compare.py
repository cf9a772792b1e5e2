"""``mbs compare BASE NEW``: flag kernel-speed regressions and lost points, and energy
regressions separately where both files carry measured energy.

Exit 1 on any regression, point now failing, missing point, new failure or energy
regression; exit 2 when
nothing could be tested (no common point, or every common point untested) unless
``--allow-untested``; exit 0 otherwise.
"""

from __future__ import annotations

HELP = "compare kernel timings of two result files and flag regressions and lost points (noise-aware)"

SHOWN = [
    "verdict",
    "format",
    "hparams_key",
    "in_features",
    "out_features",
    "tokens",
    "dtype",
    "pass",
    "backend",
    "device",
    "base_ms",
    "new_ms",
    "ratio",
    "p_value",
    "status",
]


def add_arguments(parser) -> None:
    parser.add_argument("base", help="baseline results (pytest-benchmark JSON or JSONL store)")
    parser.add_argument("new", help="new results to check against the baseline")
    parser.add_argument(
        "--threshold",
        type=float,
        default=0.05,
        help="minimum slowdown of the median counted as a regression, finite and >= 0 (default 0.05 = 5%%)",
    )
    parser.add_argument(
        "--alpha",
        type=float,
        default=0.01,
        help="significance level of the one-sided Mann-Whitney U test, in (0, 1) (default 0.01)",
    )
    parser.add_argument(
        "--allow-untested", action="store_true", help="exit 0 even when no point could be tested (default: exit 2)"
    )
    parser.add_argument(
        "--energy-threshold",
        type=float,
        default=0.05,
        help="minimum rise of the energy per call counted as an energy regression, finite and >= 0 (default 0.05)",
    )
    parser.add_argument("--all", action="store_true", help="print every compared point, not only changes")


def main(args) -> int:
    import pandas as pd

    from ..compare import FAILING, TESTED, VERDICTS, check_settings, compare_files

    check_settings(args.threshold, args.alpha)  # before loading anything
    check_settings(args.energy_threshold, args.alpha)
    table, missing, energy = compare_files(
        args.base, args.new, threshold=args.threshold, alpha=args.alpha, energy_threshold=args.energy_threshold
    )
    energy_failed = _report_energy(energy, args, pd)
    for device, dtype in missing:
        print(f"no baseline for {device} / {dtype}: not compared")
    shown = table if args.all else table[~table["verdict"].isin(["unchanged", "untested"])]
    if not shown.empty:
        with pd.option_context("display.max_rows", None, "display.width", 200):
            order = shown.assign(_rank=shown["verdict"].map(VERDICTS.index))
            print(
                order.sort_values(["_rank", "ratio"], ascending=[True, False])[SHOWN]
                .rename(columns={"hparams_key": "hparams"})
                .to_string(index=False, float_format="{:.4g}".format)
            )
    counts = table["verdict"].value_counts()
    print(
        ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS)
        + f" (threshold {args.threshold:.0%}, alpha {args.alpha})"
    )
    if sum(counts.get(v, 0) for v in FAILING) or energy_failed:
        return 1
    tested = sum(counts.get(v, 0) for v in TESTED)
    if not tested:
        why = (
            "no ok kernel point is in both files on the same GPU and dtype"
            if table.empty or not counts.get("untested", 0)
            else f"all {counts['untested']} common points have too few repeats for the test to reach alpha"
        )
        print(f"mbs compare: NOTHING WAS TESTED: {why}", flush=True)
        return 0 if args.allow_untested else 2
    if counts.get("untested", 0):
        print(
            f"warning: {counts['untested']} of {tested + counts['untested']} common points were untested "
            "(too few repeats)"
        )
    return 0


def _report_energy(energy, args, pd) -> bool:
    """Print the energy comparison (its own table and counts); True on an energy regression."""
    from ..compare import ENERGY_VERDICTS

    if energy.empty:
        return False
    shown = energy if args.all else energy[energy["verdict"] != "unchanged"]
    if not shown.empty:
        with pd.option_context("display.max_rows", None, "display.width", 200):
            print("energy per call:")
            print(shown.rename(columns={"hparams_key": "hparams"}).to_string(index=False, float_format="{:.4g}".format))
    counts = energy["verdict"].value_counts()
    print(
        "energy: "
        + ", ".join(f"{counts.get(v, 0)} {v}" for v in ENERGY_VERDICTS)
        + f" (threshold {args.energy_threshold:.0%}, beyond both sides' window spread and counter resolution)"
    )
    return bool(counts.get("energy regression", 0))
