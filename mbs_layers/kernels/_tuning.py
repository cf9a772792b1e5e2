"""Autotune-config and dot-precision settings shared by every Triton kernel family."""
from __future__ import annotations

import os

import torch
import triton


def autotune_configs(candidates: list[dict], *, warps: int = 4, stages: int = 3) -> list[triton.Config]:
    """``triton.Config``s from block-size dicts (optionally with ``num_warps``/``num_stages``);
    only the first under the interpreter, where tuning costs time and measures nothing."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        candidates = candidates[:1]
    launch = ("num_warps", "num_stages")
    return [triton.Config({k: v for k, v in c.items() if k not in launch},
                          num_warps=c.get("num_warps", warps), num_stages=c.get("num_stages", stages))
            for c in candidates]


def dot_precision(dtype: torch.dtype) -> str:
    """``tl.dot`` input precision: TF32 for fp32 only where the user enabled it (as cuBLAS does)."""
    if dtype == torch.float32 and not torch.backends.cuda.matmul.allow_tf32:
        return "ieee"
    return "tf32"

