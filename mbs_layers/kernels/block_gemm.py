"""Batched block GEMMs whose operands are addressed through stride permutations (no permute copies).

One Triton kernel computes, for every group g,  C[g] = A[g] @ B[g],  where each axis of each
operand is addressed as  ``(i // inner) * outer_stride + (i % inner) * inner_stride``. That
two-level address expresses every reshape-transpose of the block-diagonal, Monarch and BTT
layouts, so their stride permutations are folded into the loads and stores.

A layer is a chain of ``Stage``s (one for block-diagonal, two for Monarch/BTT),
    y[b, out_map(g, o)] = sum_c x[b, in_map(g, c)] · W[g, o, c],
and ``BlockChain`` is its autograd.Function: the forward runs the stages (or a fused kernel),
the backward recomputes the stage inputs and reuses the same kernel with transposed
operands for dX (= dY through Wᵀ) and dW (= dYᵀ X per group).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from ..backends import register_backend, triton_unsupported
from ..formats.blockdiag import BlockDiagLinear
from ._tuning import autotune, autotune_configs, dot_precision


@dataclass(frozen=True)
class Axis:
    """Address of index i along an axis: (i // inner) * outer_stride + (i % inner) * inner_stride."""

    outer_stride: int
    inner: int = 1
    inner_stride: int = 0

    def args(self):
        return self.inner, self.outer_stride, self.inner_stride


@dataclass(frozen=True)
class Operand:
    """A (groups, rows, cols) view of ``tensor``: group g starts at g * group_stride."""

    tensor: torch.Tensor
    group_stride: int
    rows: Axis
    cols: Axis

    def args(self):
        return (self.tensor, self.group_stride, *self.rows.args(), *self.cols.args())


GEMM_CONFIGS = [  # pipelined tiles fit A100's ~164 KB of shared memory in fp32
    {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32},
    {"BLOCK_M": 128, "BLOCK_N": 64, "BLOCK_K": 32},
    {"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 32},
    {"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 32, "num_warps": 8},
    {"BLOCK_M": 32, "BLOCK_N": 64, "BLOCK_K": 64, "num_stages": 4},
    {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 16},  # last, the fallback: fp32-ieee spills nowhere (compile-check)
]


@triton.jit
def _address(i, inner, outer_stride, inner_stride):
    i = i.to(tl.int64)  # tokens × width can pass 2**31 elements
    return (i // inner) * outer_stride + (i % inner) * inner_stride


@autotune(configs=autotune_configs(GEMM_CONFIGS), key=["M_BUCKET", "N", "K_BUCKET", "SPLITS"])
@triton.jit
def _block_gemm_kernel(
    # A (groups, M, K), B (groups, K, N), C (groups, M, N): a group stride, then per axis the
    # inner count and the outer/inner strides of its two-level address (``Axis``)
    a_ptr, stride_ag, a_m_inner, stride_am_outer, stride_am_inner, a_k_inner, stride_ak_outer, stride_ak_inner,
    b_ptr, stride_bg, b_k_inner, stride_bk_outer, stride_bk_inner, b_n_inner, stride_bn_outer, stride_bn_inner,
    c_ptr, stride_cg, c_m_inner, stride_cm_outer, stride_cm_inner, c_n_inner, stride_cn_outer, stride_cn_inner,
    stride_c_split,  # split-K: where partial product s starts (s · stride_c_split)
    GROUPS, SPLITS, M, N, K, K_CHUNK,
    M_BUCKET, K_BUCKET,  # powers of 2 of M and K_CHUNK: they key the tuning only
    PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    g, rest = (pid % GROUPS).to(tl.int64), pid // GROUPS  # groups side by side: strided maps share lines
    split, tile = rest % SPLITS, rest // SPLITS  # split s sums k in [s·K_CHUNK, (s+1)·K_CHUNK)
    k_end = tl.minimum(K, (split + 1) * K_CHUNK)
    tiles_n = tl.cdiv(N, BLOCK_N)
    rm = (tile // tiles_n) * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = (tile % tiles_n) * BLOCK_N + tl.arange(0, BLOCK_N)
    a_rows = a_ptr + g * stride_ag + _address(rm, a_m_inner, stride_am_outer, stride_am_inner)[:, None]
    b_cols = b_ptr + g * stride_bg + _address(rn, b_n_inner, stride_bn_outer, stride_bn_inner)[None, :]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(split * K_CHUNK, k_end, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        a = tl.load(
            a_rows + _address(rk, a_k_inner, stride_ak_outer, stride_ak_inner)[None, :],
            mask=(rm < M)[:, None] & (rk < k_end)[None, :],
            other=0.0,
        )
        b = tl.load(
            b_cols + _address(rk, b_k_inner, stride_bk_outer, stride_bk_inner)[:, None],
            mask=(rk < k_end)[:, None] & (rn < N)[None, :],
            other=0.0,
        )
        acc = tl.dot(a, b, acc, input_precision=PRECISION)
    c = (
        c_ptr
        + split * stride_c_split
        + g * stride_cg
        + _address(rm, c_m_inner, stride_cm_outer, stride_cm_inner)[:, None]
        + _address(rn, c_n_inner, stride_cn_outer, stride_cn_inner)[None, :]
    )
    tl.store(c, acc.to(c_ptr.dtype.element_ty), mask=(rm < M)[:, None] & (rn < N)[None, :])


def block_matmul(
    a: Operand, b: Operand, c: Operand, groups: int, m: int, n: int, k: int, splits: int = 1, split_stride: int = 0
) -> None:
    """C[g] = A[g] @ B[g] for g < groups, with A (m, k), B (k, n), C (m, n) written in place.

    With ``splits`` > 1 the sum over k is cut into that many chunks (split-K), chunk s
    writing its partial product at C + s·split_stride for the caller to add up.
    """
    chunk, splits = k_chunks(k, splits)
    grid = lambda meta: (groups * splits * triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(n, meta["BLOCK_N"]),)
    _block_gemm_kernel[grid](
        *a.args(),
        *b.args(),
        *c.args(),
        split_stride,
        groups,
        splits,
        m,
        n,
        k,
        chunk,
        triton.next_power_of_2(m),
        triton.next_power_of_2(chunk),
        PRECISION=dot_precision(a.tensor.dtype),
    )


def k_chunks(k: int, splits: int) -> tuple[int, int]:
    """(chunk, chunks): ``k`` cut into at most ``splits`` chunks of whole 64-wide tiles (any BLOCK_K)."""
    chunk = max(64, triton.cdiv(triton.cdiv(k, splits), 64) * 64)
    return chunk, max(1, triton.cdiv(k, chunk))


def weight_grad_splits(programs: int, tokens: int, device: torch.device) -> int:
    """Token chunks for a dW launch of ``programs`` tiles, so a small grid still fills the GPU:
    about two programs per SM, each summing at least 1024 tokens."""
    if device.type != "cuda":
        return 1
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    return max(1, min(triton.cdiv(2 * sms, programs), tokens // 1024))


@dataclass(frozen=True)
class FeatureMap:
    """Feature c of group g sits at column g * group_stride + axis(c) of a row-major activation."""

    group_stride: int
    axis: Axis

    def of(self, rows: torch.Tensor) -> Operand:
        """``rows`` (tokens, width) seen as (groups, tokens, features)."""
        return Operand(rows, self.group_stride, Axis(rows.stride(0)), self.axis)

    def transposed(self, rows: torch.Tensor) -> Operand:
        """``rows`` seen as (groups, features, tokens)."""
        return Operand(rows, self.group_stride, self.axis, Axis(rows.stride(0)))


def contiguous_map(width: int) -> FeatureMap:
    """Group g owns the ``width`` contiguous columns g·width ... (g+1)·width - 1."""
    return FeatureMap(width, Axis(1))


def strided_map(groups: int) -> FeatureMap:
    """Group g owns the columns g, g + groups, g + 2·groups, ... (the stride permutation)."""
    return FeatureMap(1, Axis(groups))


@dataclass(frozen=True)
class Stage:
    """y[b, out_map(g, o)] = sum_c x[b, in_map(g, c)] · W[g, o, c], W a (groups, outs, ins) view."""

    shape: tuple[int, int, int]
    in_map: FeatureMap
    out_map: FeatureMap

    def _multiply(
        self, rows: torch.Tensor, weight: torch.Tensor, src: FeatureMap, dst: FeatureMap, contracted: int
    ) -> torch.Tensor:
        """Rows read through ``src``, times W summed over its dim ``contracted``, written through ``dst``."""
        kept = 3 - contracted
        w = weight.reshape(self.shape)
        out = rows.new_empty(rows.shape[0], self.shape[0] * self.shape[kept])
        w_op = Operand(w, w.stride(0), Axis(w.stride(contracted)), Axis(w.stride(kept)))
        block_matmul(
            src.of(rows), w_op, dst.of(out), self.shape[0], rows.shape[0], self.shape[kept], self.shape[contracted]
        )
        return out

    def forward(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return self._multiply(x, weight, self.in_map, self.out_map, contracted=2)

    def input_grad(self, dy: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return self._multiply(dy, weight, self.out_map, self.in_map, contracted=1)

    def weight_grad(
        self, dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, splits: int | None = None
    ) -> torch.Tensor:
        """dW[g] = dY[g]ᵀ X[g], summed over tokens in ``splits`` chunks (default: enough to fill the GPU)."""
        groups, outs, ins = self.shape
        tokens = x.shape[0]
        if splits is None:
            splits = weight_grad_splits(groups * triton.cdiv(outs, 64) * triton.cdiv(ins, 64), tokens, x.device)
        splits = k_chunks(tokens, splits)[1]
        # partial sums stay fp32 until they are added up
        dw = (
            weight.new_empty(self.shape)
            if splits == 1
            else weight.new_empty((splits, *self.shape), dtype=torch.float32)
        )
        dw_op = Operand(dw, dw.stride(-3), Axis(dw.stride(-2)), Axis(dw.stride(-1)))
        block_matmul(
            self.out_map.transposed(dy),
            self.in_map.of(x),
            dw_op,
            groups,
            outs,
            ins,
            tokens,
            splits=splits,
            split_stride=dw.stride(0) if splits > 1 else 0,
        )
        if splits > 1:
            dw = dw.sum(0).to(weight.dtype)
        return dw.reshape(weight.shape)


@dataclass(frozen=True)
class Plan:
    """A layer's stages, plus an optional fused forward ``fused(x, *weights) -> y`` used instead."""

    stages: tuple[Stage, ...]
    fused: Callable | None = None


class BlockChain(torch.autograd.Function):
    """x -> stage_n(... stage_1(x, W_1) ..., W_n), differentiable in x and every W."""

    @staticmethod
    def forward(ctx, x, plan, *weights):
        ctx.plan = plan
        ctx.save_for_backward(x, *weights)
        if plan.fused is not None:
            return plan.fused(x, *weights)
        for stage, w in zip(plan.stages, weights):
            x = stage.forward(x, w)
        return x

    @staticmethod
    def backward(ctx, dy):
        x, *weights = ctx.saved_tensors
        stages = ctx.plan.stages
        inputs = [x]  # recompute each stage's input instead of keeping it alive since the forward
        for stage, w in zip(stages[:-1], weights[:-1]):
            inputs.append(stage.forward(inputs[-1], w))
        dy, grads = dy.contiguous(), [None] * len(weights)
        for s in reversed(range(len(stages))):
            if ctx.needs_input_grad[2 + s]:
                grads[s] = stages[s].weight_grad(dy, inputs[s], weights[s])
            if s > 0 or ctx.needs_input_grad[0]:
                dy = stages[s].input_grad(dy, weights[s])
        return (dy if ctx.needs_input_grad[0] else None), None, *grads


def run_plan(plan: Plan, x2d: torch.Tensor, *weights: torch.Tensor) -> torch.Tensor:
    """``BlockChain`` on a row-major copy of ``x2d`` (feature addressing assumes unit column stride)."""
    return BlockChain.apply(x2d.contiguous(), plan, *weights)


@register_backend(BlockDiagLinear, "triton", priority=1, unsupported=triton_unsupported)
def blockdiag_triton(layer, x2d):
    """One batched GEMM over the diagonal blocks, read and written in place."""
    k, s, p = layer.blocks.shape
    plan = Plan((Stage((k, s, p), contiguous_map(p), contiguous_map(s)),))
    return run_plan(plan, x2d, layer.blocks)
