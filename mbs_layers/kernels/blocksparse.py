"""Triton BSR kernels for ``blocksparse``: y = x Wᵀ, its input gradient and its value gradient.

One kernel, :func:`_bsr_rows_kernel`, walks a CSR list of tiles per output block and
accumulates ``x_tile @ Vᵀ`` in fp32: with the row-major tile list it is the forward, with the
column-major list and transposed value strides it is ``grad_x = grad_y W`` (no transposed copy of
the values). :func:`_bsr_grad_values_kernel` is the sampled product ``grad_yᵀ x`` on the kept tiles
only. Tiles of any size work (masked to ``block``); tile loads are ≤ 64 wide, so every config
fits an A100's shared memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from ..backends import register_backend, triton_unsupported
from ..formats.blocksparse import BlockSparseLinear
from ..sparse_support import cached_per_version, segment_pointers
from ._tuning import autotune, autotune_configs, dot_precision

MAX_TILE = 64  # widest tile edge loaded at once: fp32 3-stage pipelines stay <= 144 KB (A100: 164 KB)


_ROWS_CONFIGS = [{"BLOCK_T": 64}, {"BLOCK_T": 128, "num_warps": 8}, {"BLOCK_T": 32, "num_stages": 2}]
_GRAD_VALUES_CONFIGS = [{"BLOCK_T": 64}, {"BLOCK_T": 32, "num_stages": 2}]


@autotune(configs=autotune_configs(_ROWS_CONFIGS), key=["block", "tokens_bucket"])
@triton.jit
def _bsr_rows_kernel(x_ptr, v_ptr, y_ptr, out_ptr_ptr, in_block_ptr, val_idx_ptr,
                     tokens, tokens_bucket, block, stride_x, stride_y, stride_vp, stride_vq,
                     BLOCK_T: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_Q: tl.constexpr,
                     PRECISION: tl.constexpr):  # fmt: skip
    """y[t, R·b + p] = Σ_k Σ_q x[t, C_k·b + q] · V[val_k][p, q] over the tiles k of output block R."""
    pid_t, out_block, pid_p = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    offs_t = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    acc = tl.zeros((BLOCK_T, BLOCK_P), dtype=tl.float32)
    start = tl.load(out_ptr_ptr + out_block)
    end = tl.load(out_ptr_ptr + out_block + 1)
    for k in range(start, end):
        in_col0 = tl.load(in_block_ptr + k).to(tl.int64) * block
        tile = v_ptr + tl.load(val_idx_ptr + k).to(tl.int64) * block * block
        for q0 in range(0, block, BLOCK_Q):
            offs_q = q0 + tl.arange(0, BLOCK_Q)
            x = tl.load(
                x_ptr + offs_t[:, None].to(tl.int64) * stride_x + in_col0 + offs_q[None, :],
                mask=(offs_t[:, None] < tokens) & (offs_q[None, :] < block),
                other=0.0,
            )
            v = tl.load(
                tile + offs_q[:, None] * stride_vq + offs_p[None, :] * stride_vp,
                mask=(offs_q[:, None] < block) & (offs_p[None, :] < block),
                other=0.0,
            )
            acc += tl.dot(x, v, input_precision=PRECISION)
    y = y_ptr + offs_t[:, None].to(tl.int64) * stride_y + out_block.to(tl.int64) * block + offs_p[None, :]
    tl.store(y, acc.to(y_ptr.dtype.element_ty), mask=(offs_t[:, None] < tokens) & (offs_p[None, :] < block))


@autotune(configs=autotune_configs(_GRAD_VALUES_CONFIGS), key=["block", "tokens_bucket"])
@triton.jit
def _bsr_grad_values_kernel(gy_ptr, x_ptr, gv_ptr, rows_ptr, cols_ptr, tokens, tokens_bucket, block,
                            stride_gy, stride_x, BLOCK_T: tl.constexpr, BLOCK_P: tl.constexpr,
                            BLOCK_Q: tl.constexpr, PRECISION: tl.constexpr):  # fmt: skip
    """grad_V[k][p, q] = Σ_t grad_y[t, R_k·b + p] · x[t, C_k·b + q] for kept tile k only."""
    k, pid_p, pid_q = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_q = pid_q * BLOCK_Q + tl.arange(0, BLOCK_Q)
    row0 = tl.load(rows_ptr + k).to(tl.int64) * block
    col0 = tl.load(cols_ptr + k).to(tl.int64) * block
    acc = tl.zeros((BLOCK_P, BLOCK_Q), dtype=tl.float32)
    for t0 in range(0, tokens, BLOCK_T):
        offs_t = t0 + tl.arange(0, BLOCK_T)
        gy_t = tl.load(
            gy_ptr + offs_t[None, :].to(tl.int64) * stride_gy + row0 + offs_p[:, None],
            mask=(offs_t[None, :] < tokens) & (offs_p[:, None] < block),
            other=0.0,
        )
        x = tl.load(
            x_ptr + offs_t[:, None].to(tl.int64) * stride_x + col0 + offs_q[None, :],
            mask=(offs_t[:, None] < tokens) & (offs_q[None, :] < block),
            other=0.0,
        )
        acc += tl.dot(gy_t, x, input_precision=PRECISION)
    gv = gv_ptr + k.to(tl.int64) * block * block + offs_p[:, None] * block + offs_q[None, :]
    tl.store(gv, acc.to(gv_ptr.dtype.element_ty), mask=(offs_p[:, None] < block) & (offs_q[None, :] < block))


@dataclass(frozen=True)
class BSRLayout:
    """int32 tile lists of a support: by block row (forward) and by block column (grad_x)."""

    row_ptr: torch.Tensor  # (out/b + 1,) start of each block row's tiles
    cols: torch.Tensor  # (nnz_blocks,) block column of each tile, row-major order
    rows: torch.Tensor  # (nnz_blocks,) block row of each tile, row-major order
    identity: torch.Tensor  # (nnz_blocks,) tile k's values are values[k]
    col_ptr: torch.Tensor  # (in/b + 1,) start of each block column's tiles
    rows_by_col: torch.Tensor  # block row of each tile, column-major order
    perm_by_col: torch.Tensor  # index into values of each tile, column-major order


def bsr_layout(layer) -> BSRLayout:
    """The layer's tile lists, rebuilt only when its support buffers change."""
    rows, cols = layer.block_rows, layer.block_cols

    def build():
        nbr, nbc = layer.grid_shape
        perm = torch.argsort(cols * nbr + rows)
        return BSRLayout(
            row_ptr=segment_pointers(rows, nbr),
            cols=cols.to(torch.int32),
            rows=rows.to(torch.int32),
            identity=torch.arange(rows.numel(), dtype=torch.int32, device=rows.device),
            col_ptr=segment_pointers(cols, nbc),
            rows_by_col=rows[perm].to(torch.int32),
            perm_by_col=perm.to(torch.int32),
        )

    return cached_per_version(layer, "_bsr_layout_cache", (rows, cols), build)


def _tile(block: int) -> int:
    return min(MAX_TILE, max(16, triton.next_power_of_2(block)))


def _bsr_apply(x, values, block, n_out_blocks, out_ptr, in_blocks, val_idx, transpose):
    """Σ over tiles of x_tile @ V (transpose) or x_tile @ Vᵀ: forward and grad_x share this."""
    x = x.contiguous()
    tokens = x.shape[0]
    y = x.new_empty(tokens, n_out_blocks * block)
    stride_vp, stride_vq = (1, block) if transpose else (block, 1)
    tile = _tile(block)
    grid = lambda meta: (triton.cdiv(tokens, meta["BLOCK_T"]), n_out_blocks, triton.cdiv(block, tile))
    _bsr_rows_kernel[grid](
        x,
        values,
        y,
        out_ptr,
        in_blocks,
        val_idx,
        tokens,
        triton.next_power_of_2(tokens),
        block,
        x.stride(0),
        y.stride(0),
        stride_vp,
        stride_vq,
        BLOCK_P=tile,
        BLOCK_Q=tile,
        PRECISION=dot_precision(x.dtype),
    )
    return y


def _bsr_grad_values(grad_y, x, layout: BSRLayout, values):
    block = values.shape[-1]
    grad_y, x = grad_y.contiguous(), x.contiguous()
    tokens, tile = x.shape[0], _tile(block)
    grad_values = torch.empty_like(values)
    grid = (values.shape[0], triton.cdiv(block, tile), triton.cdiv(block, tile))
    _bsr_grad_values_kernel[grid](
        grad_y,
        x,
        grad_values,
        layout.rows,
        layout.cols,
        tokens,
        triton.next_power_of_2(tokens),
        block,
        grad_y.stride(0),
        x.stride(0),
        BLOCK_P=tile,
        BLOCK_Q=tile,
        PRECISION=dot_precision(x.dtype),
    )
    return grad_values


class BSRLinearFunction(torch.autograd.Function):
    """y = x Wᵀ for a BSR W; gradients for x (column tile lists) and the kept values."""

    @staticmethod
    def forward(ctx, x2d, values, layout: BSRLayout, grid_shape):
        ctx.save_for_backward(x2d, values)
        ctx.layout, ctx.grid_shape = layout, grid_shape
        return _bsr_apply(
            x2d, values, values.shape[-1], grid_shape[0], layout.row_ptr, layout.cols, layout.identity, transpose=False
        )

    @staticmethod
    def backward(ctx, grad_y):
        x2d, values = ctx.saved_tensors
        layout, grad_x, grad_values = ctx.layout, None, None
        if ctx.needs_input_grad[0]:
            grad_x = _bsr_apply(
                grad_y,
                values,
                values.shape[-1],
                ctx.grid_shape[1],
                layout.col_ptr,
                layout.rows_by_col,
                layout.perm_by_col,
                transpose=True,
            )
        if ctx.needs_input_grad[1]:
            grad_values = _bsr_grad_values(grad_y, x2d, layout, values)
        return grad_x, grad_values, None, None


@register_backend(BlockSparseLinear, "triton", priority=10, unsupported=triton_unsupported)
def blocksparse_triton(layer, x2d):
    """``x2d @ W.T`` through the Triton BSR kernels."""
    return BSRLinearFunction.apply(x2d, layer.values, bsr_layout(layer), layer.grid_shape)
