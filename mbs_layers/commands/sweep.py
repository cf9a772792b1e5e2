"""``mbs sweep``: time a preset's points into a resumable JSONL store."""

from __future__ import annotations

from ..sweep.preset_names import PACKAGED

HELP = f"time every format/backend of a preset ({'|'.join(PACKAGED)} or a YAML file) into a JSONL store"


def add_arguments(parser) -> None:
    parser.add_argument(
        "--preset",
        default="smoke",
        help=f"packaged preset name ({', '.join(PACKAGED)}) or a YAML file (default: smoke)",
    )
    parser.add_argument("--out", required=True, help="JSONL store; re-running with the same store resumes")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: this process (default); ray: across a Ray cluster (pip install 'mbs[ray]')",
    )
    parser.add_argument(
        "--address",
        default=None,
        help="with --engine ray: 'auto' (a running cluster), HOST:PORT, or none to start a local one",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="with --engine ray: measuring processes (default: one per GPU of the cluster)",
    )


def main(args) -> int:
    if args.engine == "local":
        if args.address is not None or args.workers is not None:
            raise ValueError("--address and --workers go with --engine ray")
        from ..sweep import run_sweep

        path = run_sweep(args.preset, args.out, device=args.device, progress=not args.no_progress)
    else:
        if args.workers is not None and args.workers < 1:
            raise ValueError(f"--workers={args.workers} must be at least 1")
        from ..sweep.ray_engine import run_sweep_ray

        path = run_sweep_ray(
            args.preset,
            args.out,
            address=args.address,
            device=args.device,
            workers=args.workers,
            progress=not args.no_progress,
        )
    print(path)
    return 0
