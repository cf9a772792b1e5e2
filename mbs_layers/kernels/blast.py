"""Triton kernels for BLAST: y_i = (Σ_j s_ij ⊙ x_j V_j) U_iᵀ in two launches.

1. ``_block_project_kernel``: z[t, j] = x[t, j] V_j for every block j (a block-diagonal GEMM,
   writing the (tokens, b, r) intermediate z).
2. ``_mix_expand_kernel``: y[t, i] = w U_iᵀ with w = Σ_j s_ij ⊙ z[t, j] formed on chip, chunk by
   chunk of the rank, as the GEMM's A operand — the mixed w never reaches HBM.

Why two kernels: every output block i needs all b of the z_j, so a single fused kernel must
either recompute x_j V_j for each i (b× the largest GEMM) or hold a token tile's b·r values of z
on chip (b·r is 512..4096 for realistic layers, beyond registers). z is tokens·b·r values — no
more than x itself whenever b·r <= in — written once and re-read from L2.

The backward reuses both: dz = kernel 1 on (dy, U) and dx = kernel 2 on (dz, sᵀ, V), since
dx_j = (Σ_i s_ij ⊙ (dy_i U_i)) V_jᵀ. Weight gradients (reductions over tokens) use torch GEMMs.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..backends import register_backend, triton_unsupported
from ..formats.blast import BlastLinear, blast_mix
from ._tuning import autotune, autotune_configs, dot_precision

_PROJECT_CONFIGS = autotune_configs(
    [
        {"BLOCK_T": 64, "BLOCK_R": 32, "BLOCK_K": 32},
        {"BLOCK_T": 128, "BLOCK_R": 64, "BLOCK_K": 32},
        {"BLOCK_T": 128, "BLOCK_R": 128, "BLOCK_K": 32, "num_warps": 8},
        {"BLOCK_T": 64, "BLOCK_R": 128, "BLOCK_K": 64},
        {"BLOCK_T": 32, "BLOCK_R": 32, "BLOCK_K": 32, "num_stages": 2},  # fp32-IEEE's fallback
    ]
)
_EXPAND_CONFIGS = autotune_configs(
    [
        {"BLOCK_T": 64, "BLOCK_P": 32, "BLOCK_R": 32},
        {"BLOCK_T": 128, "BLOCK_P": 64, "BLOCK_R": 32},
        {"BLOCK_T": 128, "BLOCK_P": 128, "BLOCK_R": 32, "num_warps": 8},
        {"BLOCK_T": 64, "BLOCK_P": 256, "BLOCK_R": 32, "num_warps": 8},
        {"BLOCK_T": 32, "BLOCK_P": 32, "BLOCK_R": 32, "num_stages": 2},  # fp32-IEEE's fallback
    ]
)


@triton.jit
def _span(start, BLOCK: tl.constexpr, limit):
    """Offsets start..start+BLOCK and their in-bounds mask (< limit)."""
    offs = start + tl.arange(0, BLOCK)
    return offs, offs < limit


@autotune(configs=_PROJECT_CONFIGS, key=["NB", "Q", "R"])
@triton.jit
def _block_project_kernel(x_ptr, v_ptr, z_ptr, T, NB, Q, R, stride_vb, stride_vq, stride_vr,
                          PRECISION: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_R: tl.constexpr,
                          BLOCK_K: tl.constexpr):  # fmt: skip
    """z[t, j, :] = x[t, j, :] @ V[j] for x (T, NB, Q), V (NB, Q, R) strided, z (T, NB, R)."""
    ts, t_ok = _span(tl.program_id(0) * BLOCK_T, BLOCK_T, T)
    ts = ts.to(tl.int64)  # token × NB·Q (or NB·R, NB·P) can pass 2**31 elements
    j = tl.program_id(1)
    rs, r_ok = _span(tl.program_id(2) * BLOCK_R, BLOCK_R, R)
    acc = tl.zeros((BLOCK_T, BLOCK_R), dtype=tl.float32)
    for k0 in range(0, Q, BLOCK_K):
        ks, k_ok = _span(k0, BLOCK_K, Q)
        x = tl.load(x_ptr + ts[:, None] * NB * Q + j * Q + ks[None, :], mask=t_ok[:, None] & k_ok[None, :], other=0.0)
        v = tl.load(
            v_ptr + j * stride_vb + ks[:, None] * stride_vq + rs[None, :] * stride_vr,
            mask=k_ok[:, None] & r_ok[None, :],
            other=0.0,
        )
        acc = tl.dot(x, v, acc, input_precision=PRECISION)
    tl.store(
        z_ptr + ts[:, None] * NB * R + j * R + rs[None, :],
        acc.to(z_ptr.dtype.element_ty),
        mask=t_ok[:, None] & r_ok[None, :],
    )


@autotune(configs=_EXPAND_CONFIGS, key=["NB", "P", "R"])
@triton.jit
def _mix_expand_kernel(z_ptr, s_ptr, u_ptr, y_ptr, T, NB, P, R, stride_si, stride_sj,
                       PRECISION: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_P: tl.constexpr,
                       BLOCK_R: tl.constexpr):  # fmt: skip
    """y[t, i, :] = (Σ_j s[i, j, :] ⊙ z[t, j, :]) @ U[i]ᵀ for z (T, NB, R), U (NB, P, R), y (T, NB, P).

    s[i, j, r] sits at i·stride_si + j·stride_sj + r, so passing sᵀ's strides mixes over i instead.
    """
    ts, t_ok = _span(tl.program_id(0) * BLOCK_T, BLOCK_T, T)
    ts = ts.to(tl.int64)  # token × NB·Q (or NB·R, NB·P) can pass 2**31 elements
    i = tl.program_id(1)
    ps, p_ok = _span(tl.program_id(2) * BLOCK_P, BLOCK_P, P)
    acc = tl.zeros((BLOCK_T, BLOCK_P), dtype=tl.float32)
    for r0 in range(0, R, BLOCK_R):
        rs, r_ok = _span(r0, BLOCK_R, R)
        w = tl.zeros((BLOCK_T, BLOCK_R), dtype=tl.float32)
        for j in range(0, NB):
            z = tl.load(
                z_ptr + ts[:, None] * NB * R + j * R + rs[None, :], mask=t_ok[:, None] & r_ok[None, :], other=0.0
            )
            s = tl.load(s_ptr + i * stride_si + j * stride_sj + rs, mask=r_ok, other=0.0)
            w += z.to(tl.float32) * s.to(tl.float32)[None, :]
        u = tl.load(u_ptr + i * P * R + ps[None, :] * R + rs[:, None], mask=r_ok[:, None] & p_ok[None, :], other=0.0)
        acc = tl.dot(w.to(u.dtype), u, acc, input_precision=PRECISION)
    tl.store(
        y_ptr + ts[:, None] * NB * P + i * P + ps[None, :],
        acc.to(y_ptr.dtype.element_ty),
        mask=t_ok[:, None] & p_ok[None, :],
    )


def block_project(x3: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """z[:, j] = x3[:, j] @ v[j] for contiguous x3 (T, b, q) and v (b, q, r) (any strides)."""
    T, nb, q = x3.shape
    r = v.shape[2]
    z = torch.empty(T, nb, r, dtype=x3.dtype, device=x3.device)
    grid = lambda meta: (triton.cdiv(T, meta["BLOCK_T"]), nb, triton.cdiv(r, meta["BLOCK_R"]))
    _block_project_kernel[grid](x3, v, z, T, nb, q, r, *v.stride(), PRECISION=dot_precision(x3.dtype))
    return z


def mix_expand(z: torch.Tensor, s: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """y[:, i] = (Σ_j s[i, j] ⊙ z[:, j]) @ u[i]ᵀ for contiguous z (T, b, r), u (b, p, r); s may be a
    transposed view with unit stride along r."""
    T, nb, r = z.shape
    p = u.shape[1]
    y = torch.empty(T, nb, p, dtype=z.dtype, device=z.device)
    grid = lambda meta: (triton.cdiv(T, meta["BLOCK_T"]), nb, triton.cdiv(p, meta["BLOCK_P"]))
    _mix_expand_kernel[grid](z, s, u, y, T, nb, p, r, s.stride(0), s.stride(1), PRECISION=dot_precision(z.dtype))
    return y


class BlastMatmul(torch.autograd.Function):
    """Differentiable BLAST forward (no bias) through the two Triton kernels."""

    @staticmethod
    def forward(ctx, x3, U, V, s):
        x3, U, V, s = x3.contiguous(), U.contiguous(), V.contiguous(), s.contiguous()
        z = block_project(x3, V)
        ctx.save_for_backward(x3, U, V, s, z)
        return mix_expand(z, s, U)

    @staticmethod
    def backward(ctx, dy):
        x3, U, V, s, z = ctx.saved_tensors
        dy = dy.contiguous()
        dzu = block_project(dy, U)  # dy_i U_i, (T, b, r)
        # dx_j = (Σ_i s_ij ⊙ dy_i U_i) V_jᵀ
        dx = mix_expand(dzu, s.transpose(0, 1), V) if ctx.needs_input_grad[0] else None
        dU = torch.einsum("tip,tir->ipr", dy, blast_mix(z, s))
        dV = torch.einsum("tjq,tjr->jqr", x3, blast_mix(dzu, s.transpose(0, 1)))
        ds = torch.einsum("tir,tjr->ijr", dzu, z)
        return dx, dU, dV, ds


@register_backend(BlastLinear, "triton", priority=10, unsupported=triton_unsupported)
def blast_triton(layer, x2d):
    """BLAST forward through :class:`BlastMatmul`."""
    b = layer.hp["nblocks"]
    y = BlastMatmul.apply(x2d.reshape(-1, b, layer.in_features // b), layer.U, layer.V, layer.s)
    return y.reshape(-1, layer.out_features)
