"""Autotune and precision settings shared by the BLAST / Kronecker / tensor-train kernels."""
from __future__ import annotations

import os

import torch
import triton


def autotune_configs(candidates: list[dict], *, warps: int = 4, stages: int = 3) -> list[triton.Config]:
    """``triton.Config``s from block-size dicts; only the first under the (slow) interpreter."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        candidates = candidates[:1]
    return [triton.Config({k: v for k, v in c.items() if k != "num_warps"},
                          num_warps=c.get("num_warps", warps), num_stages=stages)
            for c in candidates]


def dot_precision(dtype: torch.dtype) -> str:
    """``tl.dot`` input precision: TF32 for fp32 only where the user enabled it (as cuBLAS does)."""
    if dtype == torch.float32 and not torch.backends.cuda.matmul.allow_tf32:
        return "ieee"
    return "tf32"


def same_dtype_unsupported(base_check):
    """An ``unsupported`` check adding "input dtype must equal the layer's weight dtype"."""
    def check(layer, x2d):
        reason = base_check(layer, x2d)
        if reason is None and x2d.dtype != layer.weight_dtype:
            reason = f"input dtype {x2d.dtype} differs from the weights' {layer.weight_dtype}"
        return reason
    return check
