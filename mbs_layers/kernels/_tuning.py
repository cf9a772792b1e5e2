"""Autotune-config and dot-precision settings shared by every Triton kernel family, and the
per-architecture pruning of configs the compiler showed cannot run well.

``unfit_configs.json`` (written by ``mbs compile-check --write-prune``) lists, per kernel,
architecture and dtype, the configs that failed to compile, spilled registers or needed more
shared memory than the architecture allows, in any launch the backends make. Every autotuned
kernel passes :func:`prune_unfit` as its ``early_config_prune``, so a user never autotunes
into such a config; the compiler's own numbers replace hand-written shared-memory estimates.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

import torch
import triton

UNFIT_PATH = Path(__file__).with_name("unfit_configs.json")


def autotune_configs(candidates: list[dict], *, warps: int = 4, stages: int = 3) -> list[triton.Config]:
    """``triton.Config``s from block-size dicts (optionally with ``num_warps``/``num_stages``);
    only the first under the interpreter, where tuning costs time and measures nothing."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        candidates = candidates[:1]
    launch = ("num_warps", "num_stages")
    return [
        triton.Config(
            {k: v for k, v in c.items() if k not in launch},
            num_warps=c.get("num_warps", warps),
            num_stages=c.get("num_stages", stages),
        )
        for c in candidates
    ]


def autotune(configs: list[triton.Config], key: list[str], **kwargs):
    """``triton.autotune`` whose early pruning drops the configs the compiler showed unfit on
    the launch's architecture and dtype (:func:`prune_unfit`). List the smallest config last:
    it is the fallback where every config is unfit."""

    def wrap(kernel):
        return triton.autotune(
            configs=configs, key=key, prune_configs_by={"early_config_prune": prune_unfit(kernel.__name__)}, **kwargs
        )(kernel)

    return wrap


def dot_precision(dtype: torch.dtype) -> str:
    """``tl.dot`` input precision: TF32 for fp32 only where the user enabled it (as cuBLAS does)."""
    if dtype == torch.float32 and not torch.backends.cuda.matmul.allow_tf32:
        return "ieee"
    return "tf32"


def config_label(config: triton.Config) -> str:
    """``BT=64,BK=32,w4,s3``: a config's meta-parameters, warps and stages."""
    return ",".join(
        [*(f"{k}={v}" for k, v in sorted(config.kwargs.items())), f"w{config.num_warps}", f"s{config.num_stages}"]
    )


_DTYPE_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}


def launch_dtype(named: dict) -> str:
    """The dtype label of a launch's named arguments: its first tensor's dtype, fp32 split by
    ``PRECISION`` (``fp32-ieee`` or ``fp32-tf32``) for kernels that take one."""
    first = next(v for v in named.values() if isinstance(v, torch.Tensor))
    name = _DTYPE_NAMES.get(first.dtype, str(first.dtype))
    if name == "fp32" and "PRECISION" in named:
        name += f"-{named['PRECISION']}"
    return name


def arch_family(major: int, minor: int) -> int:
    """The compiled-and-checked architecture a device's configs are pruned for: sm90 for
    Hopper and newer, sm80 (A100) below."""
    return 90 if major >= 9 else 80


def _arch_of(tensors) -> int:
    device = next((t.device for t in tensors if isinstance(t, torch.Tensor) and t.device.type == "cuda"), None)
    return arch_family(*torch.cuda.get_device_capability(device)) if device is not None else 80


@lru_cache(maxsize=1)
def unfit_table() -> dict:
    """{kernel: {"sm80": {dtype: [config labels]}}} from the committed compile results."""
    return json.loads(UNFIT_PATH.read_text()) if UNFIT_PATH.exists() else {}


def prune_unfit(kernel_name: str):
    """An ``early_config_prune`` dropping the configs ``unfit_configs.json`` lists for this
    kernel on the launch's architecture and dtype."""

    def prune(configs, named_args, **kwargs):
        arch = _arch_of(named_args.values())
        dtype = launch_dtype({**named_args, **kwargs})
        unfit = set(unfit_table().get(kernel_name, {}).get(f"sm{arch}", {}).get(dtype, ()))
        kept = [c for c in configs if config_label(c) not in unfit]
        return kept or configs[-1:]  # a dtype the table never saw unfit for everything: the smallest

    return prune
