"""``mbs compile-check``: compile every Triton kernel for A100 (sm80) and H100 (sm90) without a GPU."""

from __future__ import annotations

import os
import subprocess
import sys

NAME = "compile-check"
OUT_IS_FOLDER = True  # --out names the folder of kernels-compiled.md/.json (checked by the CLI)
HELP = (
    "compile every Triton kernel at every autotune config and dtype for sm80/sm90 ahead of time; "
    "report registers, spills, shared memory and tensor-core use"
)


def add_arguments(parser) -> None:
    parser.add_argument("--arch", default="sm80,sm90", help="comma-separated architectures (sm80, sm90)")
    parser.add_argument("--kernels", nargs="+", default=None, metavar="NAME", help="only these kernels")
    parser.add_argument(
        "--dtypes",
        default=None,
        help="comma-separated dtypes (bf16, fp16, fp32-ieee, fp32-tf32); default bf16,fp32-ieee",
    )
    parser.add_argument("--full", action="store_true", help="every dtype the backends accept")
    parser.add_argument("--defaults-only", action="store_true", help="each launch's first (default) config only")
    parser.add_argument("--tokens", type=int, default=4096, help="tokens of the captured layers (default 4096)")
    parser.add_argument(
        "--launches-per-kernel",
        type=int,
        default=None,
        metavar="N",
        help="compile only each kernel's first N distinct launches per dtype (default all)",
    )
    parser.add_argument("--out", default=None, help="folder for kernels-compiled.md/.json (default: none written)")
    parser.add_argument(
        "--write-prune", action="store_true", help="rewrite mbs_layers/kernels/unfit_configs.json from the results"
    )
    parser.add_argument(
        "--cached-only",
        action="store_true",
        help="compile nothing: tabulate only the results already cached (an interrupted grid)",
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="with --out: keep the other kernels' rows of the kernels-compiled.json already there "
        "(re-run some kernels without recompiling the rest)",
    )
    parser.add_argument("--shard", default="0/1", help="I/N: compile only this share of the grid (fills the cache)")


def _parse(args):
    from ..compilecheck import aot, launches
    from ..compilecheck.grid import default_dtypes, registered_kernels
    from ..validation import check_choice, check_int

    archs = [a.strip() for a in args.arch.split(",") if a.strip()]
    for arch in archs:
        check_choice("--arch", arch, list(aot.ARCH_NAMES))
    dtypes = [d.strip() for d in args.dtypes.split(",")] if args.dtypes else list(default_dtypes(args.full))
    for dtype in dtypes:
        check_choice("--dtypes", dtype, list(launches.DTYPES))
    check_int("--tokens", args.tokens, low=1)
    if args.launches_per_kernel is not None:
        check_int("--launches-per-kernel", args.launches_per_kernel, low=1)
    for name in args.kernels or ():
        check_choice("--kernels", name, registered_kernels())
    try:
        index, count = (int(v) for v in args.shard.split("/"))
        assert 0 <= index < count
    except (ValueError, AssertionError):
        raise ValueError(f"--shard={args.shard!r} is not I/N with 0 <= I < N") from None
    return [aot.ARCH_NAMES[a] for a in archs], dtypes, (index, count)


def main(args) -> int:
    archs, dtypes, shard = _parse(args)
    if os.environ.get("TRITON_INTERPRET") == "1":  # the interpreter swaps configs and cannot compile
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        return subprocess.run([sys.executable, "-m", "mbs_layers", *sys.argv[1:]], env=env, check=False).returncode
    from ..compilecheck import grid, table

    launches = grid.captured_launches(args.kernels, dtypes, tokens=args.tokens, per_kernel=args.launches_per_kernel)
    jobs = grid.jobs_for(launches, archs, all_configs=not args.defaults_only)
    print(
        f"compile-check: {len(launches)} launches, {len(jobs)} compiles (shard {shard[0]}/{shard[1]})",
        file=sys.stderr,
        flush=True,
    )

    def progress(i, n, job, result, seconds):
        state = "ok" if result.fits else ("FAIL" if not result.ok else "unfit")
        print(
            f"[{i}/{n}] {job.launch.name} {job.launch.dtype} sm{job.arch} "
            f"{table.config_text(job.config)}: {state} ({seconds:.1f} s)",
            file=sys.stderr,
            flush=True,
        )

    rows = grid.run_grid(jobs, shard=shard, cached_only=args.cached_only, progress=progress)
    if shard[1] > 1:
        return 0
    summary = table.summarise(rows)
    print(table.summary_markdown(summary, archs))
    command, planned = " ".join(["mbs", *sys.argv[sys.argv.index(NAME) :]]), len(jobs)
    if args.merge and args.out:  # the table (and pruning) of every kernel, these kernels' rows replaced
        rows, command, planned = table.merged(
            rows, args.out, set(args.kernels or grid.registered_kernels()), command=command, planned=planned
        )
    if args.out:
        paths = table.write(rows, args.out, command=command, dtypes=dtypes, archs=archs, planned=planned)
        print(f"wrote {', '.join(map(str, paths))}")
    if args.write_prune:
        print(f"wrote {table.write_unfit(rows)}")
    failed = [r for r in rows if not r["ok"]]
    homeless = [] if args.defaults_only else table.kernels_without_config(summary)
    for r in failed:
        print(
            f"compile-check: {r['kernel']} {r['dtype']} {r['arch']} {r['config']} failed: {r['error']}", file=sys.stderr
        )
    for kernel, arch, dtype in homeless:
        print(f"compile-check: {kernel} has no config that fits {arch} at {dtype}", file=sys.stderr)
    return 1 if failed or homeless else 0
