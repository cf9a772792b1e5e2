"""``mbs tune RESULTS... [--out PATH | --install]``: the tuning table ``backend="auto"`` consults.

Default output: ``tuning.json`` beside the first results path; ``--install`` writes the table
``auto`` reads on this machine (``$MBS_TUNING_TABLE`` or ``~/.cache/mbs/tuning.json``).
"""
from __future__ import annotations

HELP = "build auto's tuning table (fastest backend per point, or the merged dense weight) from sweep results"


def add_arguments(parser) -> None:
    parser.add_argument("paths", nargs="+", help="sweep results: JSONL stores, pytest-benchmark JSON, or folders")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", default=None,
                       help="table file (default: tuning.json beside the first results path)")
    where.add_argument("--install", action="store_true",
                       help="write the table backend='auto' reads on this machine "
                            "($MBS_TUNING_TABLE or ~/.cache/mbs/tuning.json)")


def main(args) -> int:
    from collections import Counter
    from pathlib import Path

    from ..results import load_results
    from ..tuning import build_table, save_table, table_path

    frame = load_results(args.paths)
    kernel = frame[frame["kind"] == "kernel"] if "kind" in frame else frame.iloc[0:0]
    table = build_table(kernel.to_dict("records"))
    if not table:
        print("no ok forward records in these results: nothing to tune")
        return 2
    first = Path(args.paths[0])
    out = table_path() if args.install else Path(args.out or (first if first.is_dir() else first.parent) / "tuning.json")
    path = save_table(table, out)
    counts = ", ".join(f"{backend} {n}" for backend, n in Counter(table.values()).most_common())
    print(f"tuning table with {len(table)} points ({counts}) written to {path}")
    if not args.install:
        print(f"backend='auto' uses it with MBS_TUNING_TABLE={path} (or run `mbs tune --install`)")
    return 0
