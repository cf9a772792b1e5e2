"""``mbs profile``: torch.profiler traces of chosen formats and shapes, for TensorBoard/Perfetto."""

from __future__ import annotations

OUT_IS_FOLDER = True  # --out names a folder (checked by the CLI before running)
HELP = "write torch.profiler traces (TensorBoard / Perfetto readable) of formats at a shape and budget"


def add_arguments(parser) -> None:
    parser.add_argument(
        "--format",
        dest="formats",
        nargs="+",
        default=["dense", "lowrank"],
        help="format names (default: dense lowrank)",
    )
    parser.add_argument("--shape", default="1024x1024", help="IN x OUT features, e.g. 4096x11008")
    parser.add_argument("--tokens", type=int, default=1024, help="rows of the input (batch x sequence)")
    parser.add_argument("--budget", type=float, default=0.25, help="fraction of dense parameters (default 0.25)")
    parser.add_argument("--dtype", default="float32", help="float32, float16 or bfloat16")
    parser.add_argument("--backend", default="auto", help="backend to profile (default: auto)")
    parser.add_argument("--pass", dest="pass_", default="fwd_bwd", help="fwd or fwd_bwd")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--steps", type=int, default=3, help="profiled steps per format (after 2 warm-up steps)")
    parser.add_argument("--out", default="profiles", help="directory for the traces (default: profiles/)")


def main(args) -> int:
    from ..sweep.profiling import profile_formats

    for path in profile_formats(
        args.formats,
        shape=args.shape,
        tokens=args.tokens,
        budget=args.budget,
        dtype=args.dtype,
        backend=args.backend,
        pass_=args.pass_,
        device=args.device,
        steps=args.steps,
        out_dir=args.out,
    ):
        print(path)
    return 0
