"""``mbs accuracy``: the accuracy-per-parameter experiments (projection, pretrain, finetune)."""

from __future__ import annotations

HELP = "accuracy per parameter: projection error, ViT pre-training, encoder fine-tuning"


def add_arguments(parser) -> None:
    parser.add_argument("--experiment", choices=("projection", "pretrain", "finetune"), required=True)
    parser.add_argument(
        "--preset",
        choices=("smoke", "default", "thesis"),
        default="smoke",
        help="experiment size: smoke (CI, minutes on CPU), default, thesis (GPU)",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="JSONL record store (appended, resumed; default out/<experiment>-<preset>.jsonl); "
        "a CSV is written beside it. Points are keyed by the configuration, so runs of "
        "different presets or settings never share points",
    )
    parser.add_argument(
        "--seeds",
        nargs="+",
        default=None,
        metavar="SEED",
        help="seeds to run instead of the preset's, e.g. --seeds 0 1 2 (or 0,1,2)",
    )
    parser.add_argument(
        "--budgets",
        nargs="+",
        default=None,
        metavar="FRACTION",
        help="budgets (fractions of dense parameters in (0, 1]) instead of the preset's",
    )
    parser.add_argument(
        "--formats", nargs="+", default=None, metavar="FORMAT", help="formats to run instead of every registered one"
    )
    parser.add_argument(
        "--data",
        default=None,
        help="pretrain: CIFAR-10 python folder or image folder (default: sklearn digits); "
        "finetune: text file, one sentence a line (default: stdlib docstrings)",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="directory of a BERT-style encoder (model.safetensors, config.json, vocab.txt); "
        "default: the packaged all-MiniLM-L6-v2",
    )
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def parse_list(name: str, values: list[str] | None, convert) -> tuple | None:
    """``--name`` values (space- or comma-separated) converted; ``ValueError`` naming ``--name``."""
    if values is None:
        return None
    items = [v for value in values for v in value.split(",") if v]
    try:
        return tuple(convert(v) for v in items)
    except ValueError:
        raise ValueError(
            f"--{name} {' '.join(values)}: allowed {convert.__name__} values, space- or comma-separated"
        ) from None


def main(args) -> int:
    from pathlib import Path

    from ..accuracy import finetune, pretrain, projection
    from ..accuracy.tables import write_csv
    from ..records import RecordStore

    out = Path(args.out or f"out/{args.experiment}-{args.preset}.jsonl")
    common = {
        "preset": args.preset,
        "progress": not args.no_progress,
        "device": args.device,
        "seeds": parse_list("seeds", args.seeds, int),
        "budgets": parse_list("budgets", args.budgets, float),
        "formats": parse_list("formats", args.formats, str),
    }
    if args.experiment == "projection":
        if args.data:
            raise ValueError("--data is not used by the projection experiment: allowed with pretrain, finetune")
        store, table = projection.run_projection(out, model=args.model, **common), projection.projection_table
    elif args.experiment == "pretrain":
        store, table = pretrain.run_pretrain(out, data=args.data, **common), pretrain.pretrain_table
    else:
        store, table = finetune.run_finetune(out, model=args.model, data=args.data, **common), finetune.finetune_table
    records = RecordStore(store).records()
    print(table(records))
    print(f"\nrecords: {store}  csv: {write_csv(records, Path(store).with_suffix('.csv'))}")
    return 0
