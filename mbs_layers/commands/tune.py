"""``mbs tune RESULTS... [--out PATH]``: the tuning table ``backend="auto"`` consults."""
from __future__ import annotations

HELP = "build auto's tuning table (fastest backend per point, or the merged dense weight) from sweep results"


def add_arguments(parser) -> None:
    parser.add_argument("paths", nargs="+", help="sweep results: JSONL stores, pytest-benchmark JSON, or folders")
    parser.add_argument("--out", default=None,
                        help="table file (default $MBS_TUNING_TABLE or ~/.cache/mbs/tuning.json)")


def main(args) -> int:
    from collections import Counter

    from ..results import load_results
    from ..tuning import build_table, save_table

    frame = load_results(args.paths)
    kernel = frame[frame["kind"] == "kernel"] if "kind" in frame else frame.iloc[0:0]
    table = build_table(kernel.to_dict("records"))
    if not table:
        print("no ok forward records in these results: nothing to tune")
        return 2
    path = save_table(table, args.out)
    counts = ", ".join(f"{backend} {n}" for backend, n in Counter(table.values()).most_common())
    print(f"tuning table with {len(table)} points ({counts}) written to {path}")
    return 0
