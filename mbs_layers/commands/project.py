"""``mbs project``: projection error vs parameter count of every format on a Gaussian matrix."""

from __future__ import annotations

HELP = "projection error (abs/rel Frobenius) vs params of every format on randn(size, size)"


def add_arguments(parser) -> None:
    parser.add_argument("--size", type=int, default=1024, help="matrix size n of randn(n, n) (default 1024)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the matrix and of randomised projections")
    parser.add_argument(
        "--out", default="out/project.jsonl", help="JSONL record store (appended, resumed); a CSV is written beside it"
    )
    parser.add_argument("--formats", nargs="+", default=None, help="formats to run (default: all registered)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for torch (default 1: the SVDs are small, and contended threads "
        "on a shared machine make them 5-30x slower)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args) -> int:
    from pathlib import Path

    import torch

    from ..accuracy.presets import ProjectionPreset
    from ..accuracy.projection import projection_table, run_projection
    from ..accuracy.runner import QUICK_BUDGETS
    from ..accuracy.tables import write_csv
    from ..records import RecordStore
    from ..validation import check_int

    check_int("size", args.size, low=1)
    torch.set_num_threads(check_int("threads", args.threads, low=1))
    preset = ProjectionPreset(
        sizes=(args.size,),
        seeds=(args.seed,),
        budgets=QUICK_BUDGETS,
        encoder_layers=(),
        formats=tuple(args.formats) if args.formats else None,
    )
    store = run_projection(args.out, preset=preset, progress=not args.no_progress, device=args.device)
    source = f"randn{args.size}"
    records = [r for r in RecordStore(store) if r.get("source") == source and r.get("seed") == args.seed]
    print(projection_table(records))
    csv = write_csv(records, Path(store).with_suffix(".csv"))
    print(f"\nrecords: {store}  csv: {csv}")
    return 0
