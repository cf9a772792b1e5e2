"""Fused low-rank chain y = (x Aᵀ [+ x_id]) Bᵀ [+ x Sᵀ]: Low-Rank, Low-Rank Light and SLTrain.

Two kernels, in the style of Triton's matrix-multiplication tutorial (named strides, ``offs_*``, pointer blocks):

* ``_chain_kernel`` — one program owns BLOCK_T tokens: it accumulates the rank-r
  intermediate z (BLOCK_T × R_PAD, fp32) over the input features in registers, adds
  Low-Rank Light's identity part x_id as the first GEMM's epilogue, optionally stores z (for
  the weight gradient), then sweeps the output features with z as the left operand of the
  second GEMM — z never makes an HBM round trip. With few token blocks the output sweep is
  split over ``split`` programs that each recompute z (a little first-GEMM work for enough
  programs to fill the GPU). An optional sparse epilogue adds x Sᵀ from a padded ELL table
  (SLTrain, see ``kernels/sltrain.py``).
* ``_ell_kernel`` — that sparse epilogue alone, y += x Sᵀ on a y already holding the rest:
  constant fan-in (``kernels/fanin.py``) and the chain above ``MAX_FUSED_RANK``, where z no
  longer fits in registers and the low-rank part runs as two cuBLAS GEMMs through torch (its
  round trip through HBM is then small next to the GEMMs).

Which optional parts a launch compiles in is decided in one place, :class:`ChainSpec` (a frozen
description of the chain: rank, identity part, stored z, ELL width), whose ``constexprs()``
are the kernel's flags; ``chain`` and ``ell_accumulate`` are the only launchers. ``chain``
also hands the kernel 16-byte aligned factors (``_aligned``: ragged weight strides spilled
registers) and, for IEEE fp32 only, adds S with ``_ell_kernel`` after the chain (the fused
gather spilled there at every config).

Backward reuses the forward kernel on the transposed factors: gz = gy U and gx = gz [I | V] (Light:
gx[:, :r] = gz written as the stored z, gx[:, r:] = gz V); the weight gradients (U's gyᵀ z, V's gzᵀ x)
are plain long-K GEMMs left to cuBLAS. FLOPs, minimum bytes, roofline bound (4096 × 4096, rank 256,
4096 tokens: 17.2 GFLOP and 71 MB in bf16, 241 FLOP/B — compute-bound on A100, just memory-bound on
H100): docs/lowrank.md, "FLOPs, minimum bytes, roofline bound".
"""

from __future__ import annotations

import os
from dataclasses import dataclass

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


@dataclass(frozen=True)
class ChainSpec:
    """What one fused chain launch computes: y = (x Aᵀ [+ x_id]) Bᵀ [+ x Sᵀ], z stored or not.

    ``rank`` is r (A's rows, at most ``MAX_FUSED_RANK``: z must fit in registers);
    ``identity`` adds Low-Rank Light's x_id to z before the second GEMM; ``store_z`` writes z
    (the weight gradient's operand); ``ell_width`` is the width of S's padded ELL table
    (0: no sparse part). :meth:`constexprs` turns it into the kernel's compile-time flags.
    """

    rank: int
    identity: bool = False
    store_z: bool = False
    ell_width: int = 0

    def __post_init__(self):
        if not 0 <= self.rank <= MAX_FUSED_RANK:
            raise ValueError(
                f"ChainSpec: rank={self.rank} is outside the fused range 0..{MAX_FUSED_RANK} "
                "(z must fit in registers; chain() runs larger ranks as two GEMMs)"
            )
        if self.ell_width < 0:
            raise ValueError(f"ChainSpec: ell_width={self.ell_width} is negative (0 = no sparse part)")

    @property
    def r_pad(self) -> int:
        """z's padded width: a power of two, at least 16 (the smallest MMA tile side)."""
        return max(16, triton.next_power_of_2(self.rank))

    def constexprs(self) -> dict:
        return {
            "R_PAD": self.r_pad,
            "HAS_IDENTITY": self.identity,
            "STORE_Z": self.store_z,
            "HAS_ELL": self.ell_width > 0,
        }


# Which configs fit each architecture (shared memory, spills) is the compiler's word, not an
# estimate: ``autotune`` prunes by docs/kernels-compiled.md's results. z (BLOCK_T × R_PAD fp32)
# lives in registers, so large token tiles take 8 warps: on sm90 every BLOCK_T ≥ 64 config
# runs on wgmma (HGMMA; its M is 64 rows a warp group), below 64 rows on mma.sync (HMMA).
# fp32-IEEE dots run on CUDA cores and keep only the small tiles. Smallest config last.
if _interpreting():  # the interpreter cannot benchmark: one small config, blocks of 16
    _CHAIN_CONFIGS = [triton.Config({"BLOCK_T": 16, "BLOCK_K": 16, "BLOCK_N": 16}, num_warps=1, num_stages=1)]
    _ELL_CONFIGS = [triton.Config({"BLOCK_T": 16, "BLOCK_N": 16}, num_warps=1, num_stages=1)]
else:
    _CHAIN_CONFIGS = [
        triton.Config({"BLOCK_T": 128, "BLOCK_K": 32, "BLOCK_N": 64}, num_warps=8, num_stages=3),
        triton.Config({"BLOCK_T": 64, "BLOCK_K": 64, "BLOCK_N": 128}, num_warps=8, num_stages=2),
        triton.Config({"BLOCK_T": 64, "BLOCK_K": 32, "BLOCK_N": 64}, num_warps=8, num_stages=3),
        triton.Config({"BLOCK_T": 32, "BLOCK_K": 32, "BLOCK_N": 64}, num_warps=4, num_stages=2),
        triton.Config({"BLOCK_T": 16, "BLOCK_K": 32, "BLOCK_N": 64}, num_warps=4, num_stages=2),
    ]
    _ELL_CONFIGS = [
        triton.Config({"BLOCK_T": 64, "BLOCK_N": 64}, num_warps=4, num_stages=2),
        triton.Config({"BLOCK_T": 32, "BLOCK_N": 64}, num_warps=4, num_stages=2),
        triton.Config({"BLOCK_T": 32, "BLOCK_N": 32}, num_warps=4, num_stages=2),
    ]


@triton.jit
def _ell_gather(acc, x_ptr, ell_idx_ptr, ell_pos_ptr, ell_val_ptr, offs_t, offs_n, mask_t, mask_n,
                ELL_WIDTH, stride_xt, stride_xk):  # fmt: skip
    """``acc[:, j] += Σ_s x[:, idx[n_j, s]] · vals[pos[n_j, s]]`` for the output columns offs_n:
    row n of the padded ELL table (idx, pos: (N, ELL_WIDTH) contiguous int32, idx -1 = pad)
    lists the input columns x is gathered at and where their values are stored."""
    for s in range(0, ELL_WIDTH):
        col = tl.load(ell_idx_ptr + offs_n * ELL_WIDTH + s, mask=mask_n, other=-1)
        valid = col >= 0
        pos = tl.load(ell_pos_ptr + offs_n * ELL_WIDTH + s, mask=valid, other=0)
        val = tl.load(ell_val_ptr + pos, mask=valid, other=0.0).to(tl.float32)
        x = tl.load(
            x_ptr + offs_t[:, None] * stride_xt + col[None, :] * stride_xk,
            mask=mask_t[:, None] & valid[None, :],
            other=0.0,
        )
        acc += x.to(tl.float32) * val[None, :]
    return acc


@autotune(configs=_CHAIN_CONFIGS, key=["T_BUCKET", "K", "N", "R_PAD", "ELL_WIDTH"])
@triton.jit
def _chain_kernel(
    # x (T, K), a (R, K), b (N, R), y (T, N); then the optional parts' operands, read only
    # when their flag is on: x_id (T, R), z (T, R), S's padded ELL table (N, ELL_WIDTH)
    x_ptr, a_ptr, b_ptr, y_ptr, xid_ptr, z_ptr, ell_idx_ptr, ell_pos_ptr, ell_val_ptr,
    T, T_BUCKET, K, N, R, ELL_WIDTH,  # T_BUCKET (next power of 2 of T) keys the tuning only
    stride_xt, stride_xk, stride_ar, stride_ak, stride_bn, stride_br, stride_yt, stride_yn,
    stride_xid_t, stride_xid_r, stride_zt, stride_zr,
    # the chain (ChainSpec.constexprs()), the dot precision and the autotuned tile
    R_PAD: tl.constexpr, HAS_IDENTITY: tl.constexpr, STORE_Z: tl.constexpr, HAS_ELL: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """y = (x aᵀ [+ x_id]) bᵀ [+ x Sᵀ] for BLOCK_T tokens; program_id(1) picks the share of
    the output features this program sweeps (each share recomputes z)."""
    pid_t = tl.program_id(0)
    pid_s = tl.program_id(1)
    offs_t = pid_t.to(tl.int64) * BLOCK_T + tl.arange(0, BLOCK_T)  # 64-bit: T · stride may pass 2³¹
    offs_r = tl.arange(0, R_PAD)
    offs_k = tl.arange(0, BLOCK_K)
    mask_t = offs_t < T
    mask_r = offs_r < R

    # ---- first GEMM: z = x aᵀ (BLOCK_T × R_PAD, fp32) over the K input features, in registers
    x_ptrs = x_ptr + offs_t[:, None] * stride_xt + offs_k[None, :] * stride_xk
    at_ptrs = a_ptr + offs_k[:, None] * stride_ak + offs_r[None, :] * stride_ar  # aᵀ (BLOCK_K × R_PAD)
    z = tl.zeros((BLOCK_T, R_PAD), dtype=tl.float32)
    for k in range(0, tl.cdiv(K, BLOCK_K)):
        mask_k = offs_k < K - k * BLOCK_K
        x = tl.load(x_ptrs, mask=mask_t[:, None] & mask_k[None, :], other=0.0)
        at = tl.load(at_ptrs, mask=mask_k[:, None] & mask_r[None, :], other=0.0)
        z = tl.dot(x, at, z, input_precision=PRECISION)
        x_ptrs += BLOCK_K * stride_xk
        at_ptrs += BLOCK_K * stride_ak

    # ---- its epilogue: Low-Rank Light's identity part, the cast, z stored for the weight gradient
    mask_tr = mask_t[:, None] & mask_r[None, :]
    if HAS_IDENTITY:
        xid_ptrs = xid_ptr + offs_t[:, None] * stride_xid_t + offs_r[None, :] * stride_xid_r
        z += tl.load(xid_ptrs, mask=mask_tr, other=0.0).to(tl.float32)
    zc = z.to(x_ptr.dtype.element_ty)  # rounded to the input dtype, as the torch reference does
    if STORE_Z:
        if pid_s == 0:  # one writer per token block
            tl.store(z_ptr + offs_t[:, None] * stride_zt + offs_r[None, :] * stride_zr, zc, mask=mask_tr)

    # ---- second GEMM: y = zc bᵀ over this program's contiguous run of output blocks. The loop
    # starts at 0 (the program's offset goes into offs_n): with a program-dependent start
    # (range(pid_s · BLOCK_N, N, step)) ptxas spilled z on every wgmma config.
    blocks_per_program = tl.cdiv(tl.cdiv(N, BLOCK_N), tl.num_programs(1))
    for j in range(0, blocks_per_program):
        offs_n = (pid_s * blocks_per_program + j) * BLOCK_N + tl.arange(0, BLOCK_N)
        mask_n = offs_n < N
        bt_ptrs = b_ptr + offs_r[:, None] * stride_br + offs_n[None, :] * stride_bn  # bᵀ (R_PAD × BLOCK_N)
        bt = tl.load(bt_ptrs, mask=mask_r[:, None] & mask_n[None, :], other=0.0)
        acc = tl.dot(zc, bt, input_precision=PRECISION)
        if HAS_ELL:  # SLTrain's sparse part, on the output tile in registers
            acc = _ell_gather(
                acc,
                x_ptr,
                ell_idx_ptr,
                ell_pos_ptr,
                ell_val_ptr,
                offs_t,
                offs_n,
                mask_t,
                mask_n,
                ELL_WIDTH,
                stride_xt,
                stride_xk,
            )
        y_ptrs = y_ptr + offs_t[:, None] * stride_yt + offs_n[None, :] * stride_yn
        tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=mask_t[:, None] & mask_n[None, :])


@autotune(configs=_ELL_CONFIGS, key=["T_BUCKET", "N", "ELL_WIDTH"], restore_value=["y_ptr"])
@triton.jit
def _ell_kernel(
    x_ptr, y_ptr, ell_idx_ptr, ell_pos_ptr, ell_val_ptr,  # x (T, K), y (T, N), ELL table (N, ELL_WIDTH)
    T, T_BUCKET, N, ELL_WIDTH,  # T_BUCKET (next power of 2 of T) keys the tuning only
    stride_xt, stride_xk, stride_yt, stride_yn,
    BLOCK_T: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """y += x Sᵀ on a (BLOCK_T × BLOCK_N) tile of y, S a padded ELL table over y's columns."""
    offs_t = tl.program_id(0).to(tl.int64) * BLOCK_T + tl.arange(0, BLOCK_T)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_t = offs_t < T
    mask_n = offs_n < N
    y_ptrs = y_ptr + offs_t[:, None] * stride_yt + offs_n[None, :] * stride_yn
    mask_y = mask_t[:, None] & mask_n[None, :]
    acc = tl.load(y_ptrs, mask=mask_y, other=0.0).to(tl.float32)
    acc = _ell_gather(
        acc,
        x_ptr,
        ell_idx_ptr,
        ell_pos_ptr,
        ell_val_ptr,
        offs_t,
        offs_n,
        mask_t,
        mask_n,
        ELL_WIDTH,
        stride_xt,
        stride_xk,
    )
    tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=mask_y)


def _split(t_blocks: int, n_blocks: int, device: torch.device) -> int:
    """Programs per token block: enough for one wave over the SMs (each extra one recomputes z
    and re-reads its x rows, so no more), at most one per output block."""
    if device.type != "cuda":
        return 1
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    return max(1, min(MAX_SPLIT, n_blocks, triton.cdiv(sms, t_blocks)))


def _aligned(w: torch.Tensor) -> torch.Tensor:
    """``w`` (2-D) if Triton can vectorise its loads (unit inner stride, 16-byte aligned start
    and row stride), else a copy that can, rows padded to 16 bytes. Ragged weight strides
    (Light's V with n − r columns, the backward's transposed factors) made scalar loads whose
    addresses spilled registers at every config; the copy costs one pass over the weight."""
    step = 16 // w.element_size()
    if w.stride(-1) == 1 and w.stride(0) % step == 0 and w.data_ptr() % 16 == 0:
        return w
    rows, cols = w.shape
    padded = torch.empty(rows, triton.cdiv(cols, step) * step, dtype=w.dtype, device=w.device)
    return padded[:, :cols].copy_(w)


def _ell_operands(sparse, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(idx, pos, vals) checked: idx and pos (n, width) int tables of one shape, contiguous."""
    idx, pos, vals = sparse
    if idx.shape != pos.shape or idx.dim() != 2 or idx.shape[0] != n:
        raise ValueError(f"ELL tables idx {tuple(idx.shape)} and pos {tuple(pos.shape)} must both be ({n}, width)")
    return idx.contiguous(), pos.contiguous(), vals


def chain(x, a, b, y, *, x_id=None, z=None, sparse=None, split=None):
    """Write ``(x aᵀ + x_id) bᵀ + x Sᵀ`` into ``y``; store the intermediate into ``z`` if given.

    x (T, K), a (R, K), b (N, R), x_id (T, R), y (T, N), z (T, R): any strides (views are
    fine). ``sparse`` = (idx, pos, vals): padded ELL over y's N columns gathering x's columns.
    ``split`` forces the programs per token block (tests); default: sized to the GPU.
    """
    if a.shape[0] > MAX_FUSED_RANK:  # z would not fit in registers: two cuBLAS GEMMs, then S
        zz = x @ a.T
        if x_id is not None:
            zz = zz + x_id
        if z is not None:
            z.copy_(zz)
        if y.is_contiguous():
            torch.matmul(zz, b.T, out=y)
        else:
            y.copy_(zz @ b.T)
        if sparse is not None:
            ell_accumulate(x, y, sparse)
        return
    # IEEE fp32's CUDA-core dot with the gather in its loop spilled at every config (tens of KB,
    # the pre-ChainSpec kernel too): there S is added by the ELL kernel after the chain.
    fuse_ell = sparse is not None and dot_precision(x.dtype) != "ieee"
    idx, pos, vals = _ell_operands(sparse, y.shape[1]) if fuse_ell else (x, x, x)
    spec = ChainSpec(
        a.shape[0], identity=x_id is not None, store_z=z is not None, ell_width=idx.shape[1] if fuse_ell else 0
    )
    _launch_chain(spec, x, _aligned(a), _aligned(b), y, x_id, z, (idx, pos, vals), split)
    if sparse is not None and not fuse_ell:
        ell_accumulate(x, y, sparse)


def _launch_chain(spec: ChainSpec, x, a, b, y, x_id, z, ell, split) -> None:
    """``_chain_kernel`` for ``spec``; x stands in for the operands of parts the spec leaves out
    (their flag is off, so they are never read)."""
    T, K = x.shape
    N = y.shape[1]
    x_id = x_id if spec.identity else x
    z = z if spec.store_z else x

    def grid(meta):
        t_blocks = triton.cdiv(T, meta["BLOCK_T"])
        return t_blocks, split or _split(t_blocks, triton.cdiv(N, meta["BLOCK_N"]), x.device)

    _chain_kernel[grid](
        x,
        a,
        b,
        y,
        x_id,
        z,
        *ell,
        T,
        triton.next_power_of_2(T),
        K,
        N,
        spec.rank,
        spec.ell_width,
        *x.stride(),
        *a.stride(),
        *b.stride(),
        *y.stride(),
        *x_id.stride(),
        *z.stride(),
        **spec.constexprs(),
        PRECISION=dot_precision(x.dtype),
    )


def ell_accumulate(x, y, sparse) -> None:
    """``y += x Sᵀ`` for S as a padded ELL table (idx, pos, vals) over y's columns (``_ell_kernel``):
    constant fan-in's forward and backward (``kernels/fanin.py``) and the sparse part of a chain
    above ``MAX_FUSED_RANK``."""
    T, N = y.shape
    idx, pos, vals = _ell_operands(sparse, N)

    def grid(meta):
        return triton.cdiv(T, meta["BLOCK_T"]), triton.cdiv(N, meta["BLOCK_N"])

    _ell_kernel[grid](x, y, idx, pos, vals, T, triton.next_power_of_2(T), N, idx.shape[1], *x.stride(), *y.stride())


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
