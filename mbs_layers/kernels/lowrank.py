"""Fused low-rank chain y = (x Aᵀ [+ x_id]) Bᵀ [+ x Sᵀ]: Low-Rank, Low-Rank Light and SLTrain.

One program owns a block of BT tokens: it accumulates the rank-r intermediate z (BT × r) over
the input features in registers, adds Low-Rank Light's identity part x[:, :r] as the first
GEMM's epilogue, then sweeps the output features with z as the left operand of the second
GEMM — z never reaches HBM (it is written once, for the weight gradient, when asked). With
few token blocks the output sweep is split over ``split`` programs that each recompute z,
trading a little first-GEMM work for enough programs to fill the GPU. An optional sparse
epilogue adds x Sᵀ from padded ELL tables (SLTrain, see ``kernels/sltrain.py``).

Above ``MAX_FUSED_RANK`` z no longer fits in registers; there the low-rank part runs as two
cuBLAS GEMMs through torch (its round trip through HBM is then small next to the GEMMs), and
the sparse epilogue alone is added by the same kernel.

Backward reuses the forward kernel on the transposed factors: gz = gy U and
gx = gz [I | V] (Light: gx[:, :r] = gz written as the stored z, gx[:, r:] = gz V), while the
weight gradients (U's gyᵀ z, V's gzᵀ x) are plain long-K GEMMs left to cuBLAS.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from ..backends import register_backend, triton_unsupported
from ..formats.lowrank import LowRankLinear
from ..formats.lowrank_light import LowRankLightLinear
from ._tuning import autotune, dot_precision

MAX_FUSED_RANK = 256
MAX_SPLIT = 8


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


# Which configs fit each architecture (shared memory, spills) is the compiler's word, not an
# estimate: ``autotune`` prunes by docs/kernels-compiled.md's results. (BT64, BK64, BN128) is
# two-stage: Triton double-buffers the second GEMM's tile too, so three stages needed 180 KB.
# z (BT x R_PAD fp32) lives in registers: small BT for large ranks and for fp32-IEEE.
if _interpreting():  # the interpreter cannot benchmark: one small config, blocks of 16
    _CONFIGS = [triton.Config({"BT": 16, "BK": 16, "BN": 16}, num_warps=1, num_stages=1)]
else:
    _CONFIGS = [
        triton.Config({"BT": 128, "BK": 32, "BN": 128}, num_warps=8, num_stages=3),
        triton.Config({"BT": 64, "BK": 64, "BN": 128}, num_warps=8, num_stages=2),
        triton.Config({"BT": 64, "BK": 32, "BN": 64}, num_warps=4, num_stages=3),
        triton.Config({"BT": 32, "BK": 32, "BN": 64}, num_warps=4, num_stages=2),
        triton.Config({"BT": 16, "BK": 32, "BN": 64}, num_warps=4, num_stages=2),
    ]


@autotune(configs=_CONFIGS, key=["T_BUCKET", "K", "N", "R_PAD", "KS"], restore_value=["Y"])
@triton.jit
def _chain_kernel(
    X, A, XID, B, Y, Z, SP_IDX, SP_POS, SP_VALS,
    T, T_BUCKET, K, R, N, KS,  # T_BUCKET (next power of 2 of T) keys the tuning only
    sxt, sxk, sar, sak, sit, sir, sbn, sbr, syt, syn, szt, szr,
    R_PAD: tl.constexpr, LOWRANK: tl.constexpr, HAS_XID: tl.constexpr, STORE_Z: tl.constexpr,
    HAS_SPARSE: tl.constexpr, PRECISION: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BN: tl.constexpr,
):
    pid_t = tl.program_id(0)
    pid_s = tl.program_id(1)
    t_idx = pid_t.to(tl.int64) * BT + tl.arange(0, BT)  # 64-bit: T · stride may pass 2³¹
    t_mask = t_idx < T
    r_idx = tl.arange(0, R_PAD)
    r_mask = r_idx < R
    if LOWRANK:
        # First GEMM: z = x Aᵀ over the K input features, kept in registers.
        z = tl.zeros((BT, R_PAD), dtype=tl.float32)
        for k0 in range(0, K, BK):
            k_idx = k0 + tl.arange(0, BK)
            k_mask = k_idx < K
            x = tl.load(X + t_idx[:, None] * sxt + k_idx[None, :] * sxk,
                        mask=t_mask[:, None] & k_mask[None, :], other=0.0)
            a = tl.load(A + r_idx[None, :] * sar + k_idx[:, None] * sak,
                        mask=k_mask[:, None] & r_mask[None, :], other=0.0)
            z = tl.dot(x, a, z, input_precision=PRECISION)
        if HAS_XID:  # Low-Rank Light's identity part, as the first GEMM's epilogue
            z += tl.load(XID + t_idx[:, None] * sit + r_idx[None, :] * sir,
                         mask=t_mask[:, None] & r_mask[None, :], other=0.0).to(tl.float32)
        zc = z.to(X.dtype.element_ty)
        if STORE_Z:
            if pid_s == 0:
                tl.store(Z + t_idx[:, None] * szt + r_idx[None, :] * szr, zc,
                         mask=t_mask[:, None] & r_mask[None, :])
    # Second GEMM over this program's share of the output features.
    for n0 in range(pid_s * BN, N, tl.num_programs(1) * BN):
        n_idx = n0 + tl.arange(0, BN)
        n_mask = n_idx < N
        y_ptr = Y + t_idx[:, None] * syt + n_idx[None, :] * syn
        y_mask = t_mask[:, None] & n_mask[None, :]
        if LOWRANK:
            b = tl.load(B + n_idx[None, :] * sbn + r_idx[:, None] * sbr,
                        mask=r_mask[:, None] & n_mask[None, :], other=0.0)
            acc = tl.dot(zc, b, input_precision=PRECISION)
        else:  # the low-rank part is already in Y (two-GEMM fallback)
            acc = tl.load(y_ptr, mask=y_mask, other=0.0).to(tl.float32)
        if HAS_SPARSE:  # y[:, j] += Σ_s x[:, idx[j, s]] · vals[pos[j, s]], padded ELL (idx -1 = pad)
            for s in range(0, KS):
                idx = tl.load(SP_IDX + n_idx * KS + s, mask=n_mask, other=-1)
                valid = idx >= 0
                pos = tl.load(SP_POS + n_idx * KS + s, mask=valid, other=0)
                val = tl.load(SP_VALS + pos, mask=valid, other=0.0).to(tl.float32)
                xg = tl.load(X + t_idx[:, None] * sxt + idx[None, :] * sxk,
                             mask=t_mask[:, None] & valid[None, :], other=0.0)
                acc += xg.to(tl.float32) * val[None, :]
        tl.store(y_ptr, acc.to(Y.dtype.element_ty), mask=y_mask)



def _split(t_blocks: int, n_blocks: int, device: torch.device) -> int:
    """Programs per token block: enough for one wave over the SMs (each extra one recomputes z
    and re-reads its x rows, so no more), at most one per output block."""
    if device.type != "cuda":
        return 1
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    return max(1, min(MAX_SPLIT, n_blocks, triton.cdiv(sms, t_blocks)))


def chain(x, a, b, y, *, x_id=None, z=None, sparse=None, split=None):
    """Write ``(x aᵀ + x_id) bᵀ + x Sᵀ`` into ``y``; store the intermediate into ``z`` if given.

    x (T, K), a (R, K), b (N, R), x_id (T, R), y (T, N), z (T, R): any strides (views are
    fine). ``sparse`` = (idx, pos, vals): padded ELL over y's N columns gathering x's columns.
    ``split`` forces the programs per token block (tests); default: sized to the GPU.
    """
    fused = a.shape[0] <= MAX_FUSED_RANK
    if not fused:
        zz = x @ a.T
        if x_id is not None:
            zz = zz + x_id
        if z is not None:
            z.copy_(zz)
        if y.is_contiguous():
            torch.matmul(zz, b.T, out=y)
        else:
            y.copy_(zz @ b.T)
        if sparse is None:
            return
        a = b = x_id = z = None  # the kernel adds the sparse epilogue alone
    _launch(x, a, b, y, x_id, z, sparse, split)


def ell_accumulate(x, y, sparse) -> None:
    """``y += x Sᵀ`` for S as a padded ELL table (idx, pos, vals) over y's columns: the chain
    kernel's sparse epilogue alone (constant fan-in's forward and backward, see ``kernels/fanin.py``)."""
    _launch(x, None, None, y, None, None, sparse, None)


def _launch(x, a, b, y, x_id, z, sparse, split):
    """The chain kernel on y (T, N); without ``a`` the low-rank part is already in y."""
    T, K = x.shape
    N, fused = y.shape[1], a is not None
    R = a.shape[0] if fused else 0
    # x stands in for absent operands: their constexpr flag is off, so they are never read.
    has_sparse, has_xid, store_z = sparse is not None, x_id is not None, z is not None
    idx, pos, vals = sparse if has_sparse else (x, x, x)

    def grid(meta):
        t_blocks = triton.cdiv(T, meta["BT"])
        return t_blocks, split or _split(t_blocks, triton.cdiv(N, meta["BN"]), x.device)

    _chain_kernel[grid](
        x, a if fused else x, x_id if has_xid else x, b if fused else x, y, z if store_z else x, idx, pos, vals,
        T, triton.next_power_of_2(T), K, R, N, idx.shape[1] if has_sparse else 0,
        *x.stride(), *(a.stride() if fused else (0, 0)), *(x_id.stride() if has_xid else (0, 0)),
        *(b.stride() if fused else (0, 0)), *y.stride(),
        *(z.stride() if store_z else (0, 0)),
        R_PAD=max(16, triton.next_power_of_2(R)) if fused else 16, LOWRANK=fused, HAS_XID=has_xid,
        STORE_Z=store_z, HAS_SPARSE=has_sparse, PRECISION=dot_precision(x.dtype),
    )


class _LowRankFn(torch.autograd.Function):
    """y = (x Vᵀ) Uᵀ (Low-Rank) or (x[:, :r] + x[:, r:] Vᵀ) Uᵀ (Low-Rank Light), fused both ways."""

    @staticmethod
    def forward(ctx, x, u, v, light, grad_enabled):
        r = u.shape[1]
        y = x.new_empty(x.shape[0], u.shape[0])
        # z is kept for U's gradient only (forward runs with grad mode off, so it is passed in).
        z = x.new_empty(x.shape[0], r) if grad_enabled and ctx.needs_input_grad[1] else None
        x_in, x_id = (x[:, r:], x[:, :r]) if light else (x, None)
        chain(x_in, v, u, y, x_id=x_id, z=z)
        ctx.light = light
        ctx.save_for_backward(x, u, v, z)
        return y

    @staticmethod
    def backward(ctx, gy):
        x, u, v, z = ctx.saved_tensors
        r, gy = u.shape[1], gy.contiguous()
        gx = gz = None
        if ctx.needs_input_grad[0]:
            gx = x.new_empty(x.shape)
            if ctx.light:  # gx = gz [I | V]: gz lands in gx[:, :r] as the kernel's stored z
                gz = gx[:, :r]
                chain(gy, u.T, v.T, gx[:, r:], z=gz)
            else:
                gz = x.new_empty(x.shape[0], r)
                chain(gy, u.T, v.T, gx, z=gz)
        elif ctx.needs_input_grad[2]:  # no gx wanted: V's gradient needs only gz = gy U
            gz = gy @ u
        gu = gy.T @ z if ctx.needs_input_grad[1] else None
        gv = gz.T @ (x[:, r:] if ctx.light else x) if ctx.needs_input_grad[2] else None
        return gx, gu, gv, None, None



@register_backend(LowRankLinear, "triton", priority=10, unsupported=triton_unsupported)
def lowrank_triton(layer, x2d):
    return _LowRankFn.apply(x2d, layer.U, layer.V, False, torch.is_grad_enabled())


@register_backend(LowRankLightLinear, "triton", priority=10, unsupported=triton_unsupported)
def lowrank_light_triton(layer, x2d):
    return _LowRankFn.apply(x2d, layer.U, layer.V, True, torch.is_grad_enabled())
