"""``mbs sweep``: time a preset's points into a resumable JSONL store."""
from __future__ import annotations

from ..sweep.preset_names import PACKAGED

HELP = f"time every format/backend of a preset ({'|'.join(PACKAGED)} or a YAML file) into a JSONL store"


def add_arguments(parser) -> None:
    parser.add_argument("--preset", default="smoke",
                        help=f"packaged preset name ({', '.join(PACKAGED)}) or a YAML file (default: smoke)")
    parser.add_argument("--out", required=True, help="JSONL store; re-running with the same store resumes")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args) -> int:
    from ..sweep import run_sweep

    path = run_sweep(args.preset, args.out, device=args.device, progress=not args.no_progress)
    print(path)
    return 0
