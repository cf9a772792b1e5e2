"""The compile grid: every launched Triton kernel × autotune config × dtype × architecture.

Launches are captured from the Triton backend of every format that has one, on the layers the
``kernels``/``sparse24`` presets time (4096 × 4096 at budgets 0.25 and 0.1, tokens 4096,
forward and backward); identical specialisations are compiled once. Each row says whether the
kernel's own autotune pruning keeps the config on that architecture.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

from .. import backends
from ..base import FORMATS
from ..kernels import _tuning
from . import aot
from .launches import DTYPES, Launch, capture, jit_kernels

SHAPE = (4096, 4096)
TOKENS = 4096
FALLBACK_TOKENS = 256  # where this CPU cannot allocate a layer's intermediates at TOKENS
BUDGETS = (0.25, 0.1)
DEFAULT_DTYPES = ("bf16", "fp32-ieee")


def triton_formats() -> list[str]:
    return sorted(name for name in FORMATS if "triton" in backends.fast_backends(name))


def layer_settings(format_name: str) -> list[dict]:
    """The format's hyper-parameters at the preset budgets (its defaults where none fits)."""
    from ..sweep.plan import budget_hparams

    found = []
    for budget in BUDGETS:
        try:
            hp = budget_hparams(format_name, *SHAPE, budget)
        except ValueError:
            continue
        if hp not in found:
            found.append(hp)
    return found or [{}]


@dataclass(frozen=True)
class Job:
    """One compile: a captured launch, one config of its autotuner, one architecture."""

    launch: Launch
    config: object | None  # triton.Config; None for a kernel without autotuning
    arch: int

    def spec(self) -> aot.CompileSpec:
        extra = self.config.all_kwargs() if self.config is not None else {}
        return aot.specialise(self.launch.kernel, self.launch.args, {**self.launch.kwargs, **extra}, self.arch)


def captured_launches(
    kernels: Iterable[str] | None, dtypes: Iterable[str], *, tokens: int = TOKENS, per_kernel: int | None = None
) -> list[Launch]:
    """One launch per distinct specialisation of each selected kernel, per dtype label (at most
    ``per_kernel`` of them per kernel and dtype: the first ones the formats make)."""
    wanted = set(kernels) if kernels else None
    seen, unique, count = set(), [], {}
    for dtype in dtypes:
        for name in triton_formats():
            for hp in layer_settings(name):
                for launch in _capture(name, hp, dtype, tokens):
                    if wanted and launch.name not in wanted:
                        continue
                    launch.dtype = _tuning.launch_dtype(launch.named())
                    ident = (launch.dtype, variant(launch))
                    nth = count.get((launch.name, launch.dtype), 0)
                    if ident not in seen and (per_kernel is None or nth < per_kernel):
                        seen.add(ident)
                        count[launch.name, launch.dtype] = nth + 1
                        unique.append(launch)
    return unique


def _capture(name: str, hp: dict, dtype: str, tokens: int) -> list[Launch]:
    try:
        return capture(name, hp, SHAPE, tokens, dtype)
    except (MemoryError, RuntimeError) as err:  # e.g. TT's rank-r intermediates at 4096 tokens
        if "allocate" not in str(err):
            raise
        launches = capture(name, hp, SHAPE, min(tokens, FALLBACK_TOKENS), dtype)
        for launch in launches:
            launch.origin += f" (tokens {min(tokens, FALLBACK_TOKENS)})"
        return launches


def jobs_for(launches: list[Launch], archs: Iterable[int], *, all_configs: bool = True) -> list[Job]:
    """The compiles, ordered so an interrupted grid still covers every kernel: each kernel's
    first launch (every dtype, config and arch) before any kernel's second launch."""
    ordinal: dict = {}
    ranked = []
    for launch in launches:
        nth = ordinal[launch.name, launch.dtype] = ordinal.get((launch.name, launch.dtype), -1) + 1
        configs = launch.tuner.configs if launch.tuner is not None else [None]
        # smallest (last) config first: it is the fallback every arch and dtype must keep
        for config in configs[::-1] if all_configs else configs[:1]:
            ranked.extend(((launch.dtype, nth), Job(launch, config, arch)) for arch in archs)
    dtype_rank = {d: i for i, d in enumerate(dict.fromkeys(launch.dtype for launch in launches))}
    ranked.sort(key=lambda item: (item[0][1], dtype_rank[item[0][0]]))  # stable: launch order within
    return [job for _, job in ranked]


def variant(launch: Launch) -> str:
    """A short stable name for a launch's specialisation (constexprs and dtypes), at its first config."""
    first = launch.tuner.configs[0] if launch.tuner is not None else None
    return Job(launch, first, 80).spec().key()[:6]


def row(job: Job, result: aot.CompileResult) -> dict:
    launch = job.launch
    return {
        "kernel": launch.name,
        "variant": variant(launch),
        "origin": launch.origin,
        "dtype": launch.dtype,
        "arch": f"sm{job.arch}",
        "config": _tuning.config_label(job.config) if job.config else "fixed",
        **asdict(result),
        "spills": result.spills,
        "fits": result.fits,
    }


def run_grid(
    jobs: list[Job],
    *,
    shard: tuple[int, int] = (0, 1),
    cached_only: bool = False,
    progress: Callable[[int, int, Job, aot.CompileResult, float], None] | None = None,
) -> list[dict]:
    """Compile ``jobs`` (those of ``shard`` = (index, count), by cache key) through the disk cache;
    with ``cached_only``, rows for the jobs already in the cache only (an interrupted grid's table)."""
    rows = []
    mine = [j for j in jobs if int(j.spec().key(), 16) % shard[1] == shard[0]]
    for i, job in enumerate(mine, 1):
        start = time.perf_counter()
        result = aot.cached_result(job.spec()) if cached_only else aot.compile_cached(job.spec())
        if result is None:
            continue
        rows.append(row(job, result))
        if progress:
            progress(i, len(mine), job, result, time.perf_counter() - start)
    return rows


def default_dtypes(full: bool) -> tuple[str, ...]:
    return tuple(DTYPES) if full else DEFAULT_DTYPES


def registered_kernels() -> list[str]:
    return sorted(jit_kernels())
