"""SLTrain's Triton backend: the fused low-rank chain with the sparse part as its epilogue.

Why this design: S is ~1–10 % dense on a uniformly random support, far too sparse for
tensor cores, and a separate sparse GEMM (torch.sparse CSR / cuSPARSE) would pay another
launch and a second pass over x and the output, while the fused low-rank kernel already
holds each output tile in registers. S is therefore added in that tile's epilogue: for output feature j the kernel
gathers x's columns listed in a padded ELL table (row j's nonzeros, padded to the longest
row) and multiplies by the values — x Sᵀ costs no extra output traffic and x's rows are hot
in L1/L2 from the first GEMM. The backward gx = gy U V + gy S runs the same kernel on the
transposed ELL table (column c's nonzeros, entries pointing at S's stored values, so S is
never copied), and the value gradient is a sampled product (SDDMM) gathering gy and x at
the support. ELL tables are derived from the CSR support and cached until it changes.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..backends import register_backend, triton_unsupported
from ..formats.sltrain import SLTrainLinear, support_rows
from ..sparse_support import cached_per_version
from .lowrank import chain


def ell_table(major: torch.Tensor, minor: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded ELL of a COO support grouped by ``major``: (minor index, value position), -1 = pad.

    Row i of both (size, longest group) int32 tables lists group i's ``minor`` indices and the
    positions of their values in the stored value vector.
    """
    order = torch.argsort(major, stable=True)
    grouped = major[order]
    counts = torch.bincount(grouped, minlength=size)
    starts = counts.cumsum(0) - counts
    slot = torch.arange(grouped.numel(), device=major.device) - starts[grouped]
    width = max(1, int(counts.max()))
    idx = torch.full((size, width), -1, dtype=torch.int32, device=major.device)
    pos = torch.full_like(idx, -1)
    idx[grouped, slot] = minor[order].to(torch.int32)
    pos[grouped, slot] = order.to(torch.int32)
    return idx, pos


def ell_tables(layer) -> dict:
    """The support's COO rows (int32) and its forward (by output row) and backward (by input
    column) ELL tables, rebuilt whenever the support changes (load_state_dict, a device move)."""

    def build():
        rows, cols = support_rows(layer.crow, layer.nnz), layer.col.long()
        return {
            "rows": rows.to(torch.int32),
            "fwd": ell_table(rows, cols, layer.out_features),
            "bwd": ell_table(cols, rows, layer.in_features),
        }

    return cached_per_version(layer, "_ell_tables", (layer.crow, layer.col), build)


@triton.jit
def _sddmm_kernel(gy_ptr, x_ptr, rows_ptr, cols_ptr, out_ptr, T, NNZ, stride_gyt, stride_gyn, stride_xt, stride_xk,
                  BLOCK_T: tl.constexpr, BLOCK_P: tl.constexpr):  # fmt: skip
    """out[p] = Σ_t gy[t, rows[p]] · x[t, cols[p]] for a block of BLOCK_P support positions."""
    offs_p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    mask_p = offs_p < NNZ
    rows = tl.load(rows_ptr + offs_p, mask=mask_p, other=0)
    cols = tl.load(cols_ptr + offs_p, mask=mask_p, other=0)
    acc = tl.zeros((BLOCK_P,), dtype=tl.float32)
    for t0 in range(0, T, BLOCK_T):
        offs_t = (t0 + tl.arange(0, BLOCK_T)).to(tl.int64)
        mask = (offs_t < T)[:, None] & mask_p[None, :]
        gy = tl.load(gy_ptr + offs_t[:, None] * stride_gyt + rows[None, :] * stride_gyn, mask=mask, other=0.0)
        x = tl.load(x_ptr + offs_t[:, None] * stride_xt + cols[None, :] * stride_xk, mask=mask, other=0.0)
        acc += tl.sum(gy.to(tl.float32) * x.to(tl.float32), axis=0)
    tl.store(out_ptr + offs_p, acc.to(out_ptr.dtype.element_ty), mask=mask_p)


def sampled_grad(gy, x, rows, cols, dtype) -> torch.Tensor:
    """(gyᵀ x) sampled at the support (rows, cols): the gradient of S's values."""
    out = torch.empty(rows.numel(), dtype=dtype, device=gy.device)
    block_t, block_p = (16, 16) if gy.device.type == "cpu" else (32, 128)
    _sddmm_kernel[(triton.cdiv(rows.numel(), block_p),)](
        gy, x, rows, cols, out, gy.shape[0], rows.numel(), *gy.stride(), *x.stride(), BLOCK_T=block_t, BLOCK_P=block_p
    )
    return out


class _SLTrainFn(torch.autograd.Function):
    """y = (x Vᵀ) Uᵀ + x Sᵀ with S's values on a fixed support."""

    @staticmethod
    def forward(ctx, x, u, v, values, tables, rows, cols, grad_enabled):
        y = x.new_empty(x.shape[0], u.shape[0])
        z = x.new_empty(x.shape[0], u.shape[1]) if grad_enabled and ctx.needs_input_grad[1] else None
        chain(x, v, u, y, z=z, sparse=(*tables["fwd"], values))
        ctx.tables = tables
        ctx.save_for_backward(x, u, v, values, z, rows, cols)
        return y

    @staticmethod
    def backward(ctx, gy):
        x, u, v, values, z, rows, cols = ctx.saved_tensors
        gy = gy.contiguous()
        gx = gz = None
        if ctx.needs_input_grad[0]:
            gx, gz = x.new_empty(x.shape), x.new_empty(x.shape[0], u.shape[1])
            chain(gy, u.T, v.T, gx, z=gz, sparse=(*ctx.tables["bwd"], values))
        elif ctx.needs_input_grad[2]:  # no gx wanted: V's gradient needs only gz = gy U
            gz = gy @ u
        gu = gy.T @ z if ctx.needs_input_grad[1] else None
        gv = gz.T @ x if ctx.needs_input_grad[2] else None
        gs = sampled_grad(gy, x, rows, cols, values.dtype) if ctx.needs_input_grad[3] else None
        return gx, gu, gv, gs, None, None, None, None


@register_backend(SLTrainLinear, "triton", priority=10, unsupported=triton_unsupported)
def sltrain_triton(layer, x2d):
    tables = ell_tables(layer)
    return _SLTrainFn.apply(
        x2d, layer.U, layer.V, layer.values, tables, tables["rows"], layer.col, torch.is_grad_enabled()
    )
