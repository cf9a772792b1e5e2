"""``mbs tune RESULTS... [--out PATH | --install]``: the tuning table ``backend="auto"`` consults.

Default output: ``tuning.json`` beside the first results path; ``--install`` writes the table
``auto`` reads on this machine (``$MBS_TUNING_TABLE`` or ``~/.cache/mbs/tuning.json``).

The table is built here from sweep records (the fastest forward backend per point, or the
merged dense weight where dense beat them all); ``mbs_layers.tuning`` only stores and looks
it up, so the layers never depend on the sweep's records.
"""

from __future__ import annotations

from ..registry import FORMATS

HELP = "build auto's tuning table (fastest backend per point, or the merged dense weight) from sweep results"


def add_arguments(parser) -> None:
    parser.add_argument("paths", nargs="+", help="sweep results: JSONL stores, pytest-benchmark JSON, or folders")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", default=None, help="table file (default: tuning.json beside the first results path)")
    where.add_argument(
        "--install",
        action="store_true",
        help="write the table backend='auto' reads on this machine ($MBS_TUNING_TABLE or ~/.cache/mbs/tuning.json)",
    )


def full_hparams(record: dict) -> dict:
    """The record's hyper-parameters with the format's defaults filled in, as ``layer.hparams``
    has them (a sweep records the budget search's dict, which may omit defaults)."""
    return FORMATS[record["format"]].check_hparams(record["in_features"], record["out_features"], **record["hparams"])


def build_table(records) -> dict[str, str]:
    """{key: fastest backend or MERGED} from kernel records (forward passes that ran ``ok``)."""
    from ..tuning import MERGED, table_key, tokens_bucket

    best: dict[str, tuple[float, str, tuple]] = {}
    dense: dict[tuple, float] = {}
    for r in records:
        if r.get("status") != "ok" or r.get("pass") != "fwd" or not r.get("median_s"):
            continue
        if r["format"] not in FORMATS:  # results of a format this install does not have
            continue
        point = (r["device"], r["in_features"], r["out_features"], r["dtype"], tokens_bucket(r["tokens"]))
        if r["format"] == "dense":
            dense[point] = min(dense.get(point, float("inf")), r["median_s"])
            continue
        key = table_key(
            r["device"], r["format"], full_hparams(r), r["in_features"], r["out_features"], r["dtype"], r["tokens"]
        )
        if key not in best or r["median_s"] < best[key][0]:
            best[key] = (r["median_s"], r["backend"], point)
    return {
        key: MERGED if dense.get(point, float("inf")) < seconds else backend
        for key, (seconds, backend, point) in best.items()
    }


def main(args) -> int:
    from collections import Counter
    from pathlib import Path

    from ..records.files import load_results
    from ..tuning import save_table, table_path

    frame = load_results(args.paths)
    kernel = frame[frame["kind"] == "kernel"] if "kind" in frame else frame.iloc[0:0]
    table = build_table(kernel.to_dict("records"))
    if not table:
        print("no ok forward records in these results: nothing to tune")
        return 2
    first = Path(args.paths[0])
    beside = first if first.is_dir() else first.parent
    out = table_path() if args.install else Path(args.out or beside / "tuning.json")
    path = save_table(table, out)
    counts = ", ".join(f"{backend} {n}" for backend, n in Counter(table.values()).most_common())
    print(f"tuning table with {len(table)} points ({counts}) written to {path}")
    if not args.install:
        print(f"backend='auto' uses it with MBS_TUNING_TABLE={path} (or run `mbs tune --install`)")
    return 0
