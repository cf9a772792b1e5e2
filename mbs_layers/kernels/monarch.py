"""Monarch and BTT Triton backends: a fused two-core kernel, or two stride-permuted block GEMMs.

Both formats are  y[b, i1·m2 + i2] = sum_{j1, rho} L[i2, i1, j1, rho] · (R[j1, i2, rho] · x[b, j1·n2 :])
(BTT directly; Monarch whenever k divides q, with r = q/k, as strided views of w1 and w2).
The fused kernel gives each program a tile of rows, one output group i2 and all its m1
outputs, and walks j1: the rank-r intermediate R[j1, i2] x_j1 lives in registers/SRAM only,
so it never reaches HBM. The price is that every output group re-reads the row tile of x
(m2 reads, mostly from L2: the m2 programs of a row tile are launched next to each other).
``use_fused`` takes it where the intermediate fits on chip (r <= 64, m1 <= 128) and those
re-reads cost less than the intermediate's HBM round trip; otherwise, and for Monarch's
uneven block ranks, the layer runs as two block GEMMs (``block_gemm``). The backward always
uses the block GEMMs (recomputing the intermediate).
"""

from __future__ import annotations

import triton
import triton.language as tl

from ..backends import register_backend, triton_unsupported
from ..formats.btt import BTTLinear
from ..formats.monarch import MonarchLinear
from ._tuning import autotune, autotune_configs, dot_precision
from .block_gemm import Axis, FeatureMap, Plan, Stage, contiguous_map, run_plan, strided_map

MAX_FUSED_RANK = 64
MAX_FUSED_OUT_BLOCK = 128
# x re-reads (L2) allowed per intermediate element spared a round trip (2 HBM passes) — assumes
# L2 serves ~4x HBM bandwidth; to be calibrated on a GPU.
REREADS_PER_ROUND_TRIP = 8
# (BLOCK_M, BLOCK_K, stages, warps): with BLOCK_N <= 128 and BLOCK_R <= 64 the pipelined x/R tiles,
# the L tile and the intermediate stay under ~140 KB in fp32 (A100: 164 KB).
FUSED_CONFIGS = [
    {"BLOCK_M": 64, "BLOCK_K": 32},
    {"BLOCK_M": 128, "BLOCK_K": 32},
    {"BLOCK_M": 64, "BLOCK_K": 64, "num_stages": 2},
    {"BLOCK_M": 128, "BLOCK_K": 32, "num_warps": 8},
    {"BLOCK_M": 32, "BLOCK_K": 32, "num_stages": 2},
]  # the last: fp32-IEEE's fallback


def _tile(n: int) -> int:
    """Smallest power of two >= n that ``tl.dot`` accepts (>= 16)."""
    return max(16, triton.next_power_of_2(n))


@autotune(configs=autotune_configs(FUSED_CONFIGS), key=["M_BUCKET", "N1", "N2", "M1", "M2"])
@triton.jit
def _btt_fused_kernel(
    # x (M, N1·N2), y (M, M1·M2); R indexed [j1, i2, rank, k], L indexed [i2, i1, j1, rank]
    x_ptr, y_ptr, r_ptr, l_ptr, M, M_BUCKET, N1, N2, M1, M2, RANK, stride_xm, stride_ym,
    stride_r_j1, stride_r_i2, stride_r_rank, stride_r_k, stride_l_i2, stride_l_i1, stride_l_j1, stride_l_rank,
    PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    BLOCK_R: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    i2, tile = pid % M2, pid // M2  # the output groups of a row tile run side by side, sharing x in L2
    tiles_n = tl.cdiv(M1, BLOCK_N)
    rm = (tile // tiles_n) * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = (tile % tiles_n) * BLOCK_N + tl.arange(0, BLOCK_N)  # i1
    rr = tl.arange(0, BLOCK_R)  # rho, padded to a dot-able width and masked
    x_rows = x_ptr + rm[:, None].to(tl.int64) * stride_xm
    r_group = r_ptr + i2 * stride_r_i2 + rr[None, :] * stride_r_rank
    l_tile = l_ptr + i2 * stride_l_i2 + rn[None, :] * stride_l_i1 + rr[:, None] * stride_l_rank
    l_mask = (rr < RANK)[:, None] & (rn < M1)[None, :]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for j1 in range(N1):
        inter = tl.zeros((BLOCK_M, BLOCK_R), dtype=tl.float32)
        for k0 in range(0, N2, BLOCK_K):
            rk = k0 + tl.arange(0, BLOCK_K)
            x = tl.load(x_rows + j1 * N2 + rk[None, :], mask=(rm < M)[:, None] & (rk < N2)[None, :], other=0.0)
            r = tl.load(
                r_group + j1 * stride_r_j1 + rk[:, None] * stride_r_k,
                mask=(rk < N2)[:, None] & (rr < RANK)[None, :],
                other=0.0,
            )
            inter = tl.dot(x, r, inter, input_precision=PRECISION)
        left = tl.load(l_tile + j1 * stride_l_j1, mask=l_mask, other=0.0)
        # rounded to the input dtype, as the two-GEMM path stores it
        acc = tl.dot(inter.to(left.dtype), left, acc, input_precision=PRECISION)
    y = y_ptr + rm[:, None].to(tl.int64) * stride_ym + (rn * M2 + i2)[None, :]
    tl.store(y, acc.to(y_ptr.dtype.element_ty), mask=(rm < M)[:, None] & (rn < M1)[None, :])


def use_fused(in_features: int, rank: int, out_block: int, out_groups: int, inter_width: int) -> bool:
    """Fuse when the intermediate (rows × r) and outputs (rows × m1) stay on chip and re-reading
    x once per output group (m2 · in) costs less than writing and reading the intermediate."""
    fits = rank <= MAX_FUSED_RANK and out_block <= MAX_FUSED_OUT_BLOCK
    return fits and out_groups * in_features <= REREADS_PER_ROUND_TRIP * inter_width


def btt_fused(x, cores_r, cores_l):
    """y = BTT(x) for cores R (n1, m2, r, n2) and L (m2, m1, n1, r), any strides, in one kernel."""
    n1, m2, rank, n2 = cores_r.shape
    m1 = cores_l.shape[1]
    y = x.new_empty(x.shape[0], m1 * m2)
    block_n = _tile(m1)
    grid = lambda meta: (triton.cdiv(x.shape[0], meta["BLOCK_M"]) * triton.cdiv(m1, block_n) * m2,)
    _btt_fused_kernel[grid](
        x,
        y,
        cores_r,
        cores_l,
        x.shape[0],
        triton.next_power_of_2(x.shape[0]),
        n1,
        n2,
        m1,
        m2,
        rank,
        x.stride(0),
        y.stride(0),
        *cores_r.stride(),
        *cores_l.stride(),
        PRECISION=dot_precision(x.dtype),
        BLOCK_N=block_n,
        BLOCK_R=_tile(rank),
    )
    return y


def monarch_cores(w1, w2):
    """Monarch's factors as BTT cores (views, no copies); valid when k divides q."""
    k, q, p = w1.shape
    rank = q // k
    return w1.reshape(k, rank, k, p).transpose(1, 2), w2.reshape(k, w2.shape[1], k, rank)


def monarch_plan(layer) -> Plan:
    """h = blockdiag(w1) x (contiguous), then group i reads h[t·k + i] and writes y[s'·k + i]."""
    k, q, p = layer.w1.shape
    s = layer.w2.shape[1]
    stages = (Stage((k, q, p), contiguous_map(p), contiguous_map(q)), Stage((k, s, q), strided_map(k), strided_map(k)))
    if q % k == 0 and use_fused(k * p, q // k, s, k, k * q):
        return Plan(stages, lambda x, w1, w2: btt_fused(x, *monarch_cores(w1, w2)))
    return Plan(stages)


def btt_plan(layer) -> Plan:
    """z = R x written as (tokens, n1, m2, r); group i2 reads (j1, rho) at i2·r + j1·m2·r + rho
    and writes y[b, i1·m2 + i2]."""
    n1, m2, rank, n2 = layer.R.shape
    m1 = layer.L.shape[1]
    stages = (
        Stage((n1, m2 * rank, n2), contiguous_map(n2), contiguous_map(m2 * rank)),
        Stage((m2, m1, n1 * rank), FeatureMap(rank, Axis(m2 * rank, rank, 1)), strided_map(m2)),
    )
    return Plan(stages, btt_fused if use_fused(n1 * n2, rank, m1, m2, n1 * m2 * rank) else None)


@register_backend(MonarchLinear, "triton", priority=1, unsupported=triton_unsupported)
def monarch_triton(layer, x2d):
    return run_plan(monarch_plan(layer), x2d, layer.w1, layer.w2)


@register_backend(BTTLinear, "triton", priority=1, unsupported=triton_unsupported)
def btt_triton(layer, x2d):
    return run_plan(btt_plan(layer), x2d, layer.R, layer.L)
