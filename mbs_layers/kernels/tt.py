"""Triton mode-product kernels: the factored forward/backward of the ``tt`` and ``kronecker`` formats.

Both formats apply W as a cost-planned chain of contractions (see ``formats.tt.run_chain``);
every step that touches x is a mode product ``out[x] = G @ s[x]`` with s laid out (X, K, M) and
out (X, N, M): one launch per step, reading the running tensor with strided row addressing, so
along a sweep the dense W and permuted copies never exist.
Rows of the GEMM are the (x, m) pairs: row (x, m) of s is s[x, :, m] (stride M).
The backward reuses the same kernel with Gᵀ (strides swapped) for ds, and a split-row reduction
kernel for dG = Σ_{x,m} dout[x, :, m] ⊗ s[x, :, m].
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..backends import register_backend, triton_unsupported
from ..formats.kronecker import KroneckerLinear
from ..formats.tt import TTLinear, run_chain
from ._tuning import autotune, autotune_configs, dot_precision

_FWD_CONFIGS = autotune_configs(
    [
        {"BLOCK_R": 64, "BLOCK_N": 32, "BLOCK_K": 32},
        {"BLOCK_R": 128, "BLOCK_N": 64, "BLOCK_K": 32},
        {"BLOCK_R": 64, "BLOCK_N": 128, "BLOCK_K": 32},
        {"BLOCK_R": 128, "BLOCK_N": 128, "BLOCK_K": 32, "num_warps": 8},
    ]
)
_WGRAD_CONFIGS = autotune_configs(
    [  # fp32-ieee FMA dots hold all BLOCK_R (dot K): BLOCK_R=16, last, never spills
        {"BLOCK_N": 32, "BLOCK_K": 32, "BLOCK_R": 64},
        {"BLOCK_N": 64, "BLOCK_K": 64, "BLOCK_R": 64},
        {"BLOCK_N": 128, "BLOCK_K": 64, "BLOCK_R": 32},
        {"BLOCK_N": 64, "BLOCK_K": 64, "BLOCK_R": 16, "num_warps": 8},
        {"BLOCK_N": 32, "BLOCK_K": 32, "BLOCK_R": 16},
    ]
)


@autotune(configs=_FWD_CONFIGS, key=["N", "K", "M"])
@triton.jit
def _mode_product_kernel(g_ptr, s_ptr, out_ptr, X, N, K, M, stride_gn, stride_gk,
                         PRECISION: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr,
                         BLOCK_K: tl.constexpr):  # fmt: skip
    """out[x, n, m] = Σ_k G[n, k] · s[x, k, m], one (BLOCK_R rows) × (BLOCK_N) tile per program."""
    # int64: the (x, m) row times the K·M / N·M slab can pass 2**31 elements
    rows = (tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)).to(tl.int64)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    x, m = rows // M, rows % M
    row_ok, col_ok = rows < X * M, cols < N
    acc = tl.zeros((BLOCK_R, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        k_ok = ks < K
        s = tl.load(s_ptr + (x * K * M + m)[:, None] + ks[None, :] * M, mask=row_ok[:, None] & k_ok[None, :], other=0.0)
        g = tl.load(
            g_ptr + cols[None, :] * stride_gn + ks[:, None] * stride_gk, mask=k_ok[:, None] & col_ok[None, :], other=0.0
        )
        acc = tl.dot(s, g, acc, input_precision=PRECISION)
    tl.store(
        out_ptr + (x * N * M + m)[:, None] + cols[None, :] * M,
        acc.to(out_ptr.dtype.element_ty),
        mask=row_ok[:, None] & col_ok[None, :],
    )


@autotune(configs=_WGRAD_CONFIGS, key=["N", "K", "M"])
@triton.jit
def _mode_product_wgrad_kernel(dout_ptr, s_ptr, part_ptr, X, N, K, M, ROWS_PER_SPLIT,
                               PRECISION: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                               BLOCK_R: tl.constexpr):  # fmt: skip
    """part[split, n, k] = Σ over this split's rows (x, m) of dout[x, n, m] · s[x, k, m] (fp32)."""
    ns = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    ks = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
    split = tl.program_id(2)
    n_ok, k_ok = ns < N, ks < K
    acc = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
    first = split * ROWS_PER_SPLIT
    last = tl.minimum(first + ROWS_PER_SPLIT, X * M)
    for r0 in range(first, last, BLOCK_R):
        rows = (r0 + tl.arange(0, BLOCK_R)).to(tl.int64)  # x·N·M can pass 2**31 elements
        x, m = rows // M, rows % M
        r_ok = rows < last
        d = tl.load(
            dout_ptr + (x * N * M + m)[None, :] + ns[:, None] * M, mask=n_ok[:, None] & r_ok[None, :], other=0.0
        )
        s = tl.load(s_ptr + (x * K * M + m)[:, None] + ks[None, :] * M, mask=r_ok[:, None] & k_ok[None, :], other=0.0)
        acc = tl.dot(d, s, acc, input_precision=PRECISION)
    tl.store(part_ptr + split * N * K + ns[:, None] * K + ks[None, :], acc, mask=n_ok[:, None] & k_ok[None, :])


def _launch_mode_product(g: torch.Tensor, s: torch.Tensor, transpose_g: bool = False) -> torch.Tensor:
    """``g @ s[x]`` (or ``gᵀ @ s[x]``) for a 2-D ``g`` and a contiguous (X, K, M) ``s``."""
    X, K, M = s.shape
    N = g.shape[1] if transpose_g else g.shape[0]
    stride_gn, stride_gk = (g.stride(1), g.stride(0)) if transpose_g else (g.stride(0), g.stride(1))
    out = torch.empty(X, N, M, dtype=s.dtype, device=s.device)
    grid = lambda meta: (triton.cdiv(X * M, meta["BLOCK_R"]), triton.cdiv(N, meta["BLOCK_N"]))
    _mode_product_kernel[grid](g, s, out, X, N, K, M, stride_gn, stride_gk, PRECISION=dot_precision(s.dtype))
    return out


def launch_wgrad(dout: torch.Tensor, s: torch.Tensor, splits: int | None = None) -> torch.Tensor:
    """Σ_{x, m} dout[x, :, m] ⊗ s[x, :, m] as an (N, K) fp32 tensor.

    The rows are split into ``splits`` ranges (default: one per 1024 rows, at most 256) reduced in
    parallel into fp32 partials, so a small (N, K) output still fills the GPU.
    """
    X, N, M = dout.shape
    K = s.shape[1]
    rows = X * M
    splits = splits or max(1, min(triton.cdiv(rows, 1024), 256))
    rows_per_split = triton.cdiv(rows, splits)
    part = torch.empty(splits, N, K, dtype=torch.float32, device=s.device)
    grid = lambda meta: (triton.cdiv(N, meta["BLOCK_N"]), triton.cdiv(K, meta["BLOCK_K"]), splits)
    _mode_product_wgrad_kernel[grid](dout, s, part, X, N, K, M, rows_per_split, PRECISION=dot_precision(s.dtype))
    return part.sum(0)


class ModeProduct(torch.autograd.Function):
    """Differentiable ``out[x] = g @ s[x]`` for g (N, K) and s (X, K, M), through Triton."""

    @staticmethod
    def forward(ctx, g, s):
        g, s = g.contiguous(), s.contiguous()
        ctx.save_for_backward(g, s)
        return _launch_mode_product(g, s)

    @staticmethod
    def backward(ctx, dout):
        g, s = ctx.saved_tensors
        dout = dout.contiguous()
        dg = launch_wgrad(dout, s).to(g.dtype) if ctx.needs_input_grad[0] else None
        ds = _launch_mode_product(g, dout, transpose_g=True) if ctx.needs_input_grad[1] else None
        return dg, ds


def tt_triton(layer, x2d):
    """The TT / Kronecker forward with each mode product of the planned order in Triton."""
    return run_chain(list(layer.cores), x2d, contract=ModeProduct.apply)


register_backend(TTLinear, "triton", priority=10, unsupported=triton_unsupported)(tt_triton)
register_backend(KroneckerLinear, "triton", priority=10, unsupported=triton_unsupported)(tt_triton)
