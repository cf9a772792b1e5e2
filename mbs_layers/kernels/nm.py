"""Triton N:M kernel shared by ``semi24`` and ``nm``: compressed weight decompressed in registers.

The weight is read in compressed form, the out·in·N/M kept values (the layer's ``values``
viewed as (out, in·N/M), no copy) plus one integer per group of M holding the N kept positions
(⌈log₂ M⌉ bits each, packed; int8 for 2:4, the narrowest of int8/16/32/64 that holds N·bits in
general), and expanded to a dense tile right before a tensor-core ``tl.dot``. For 2:4 that
halves the weight traffic (what matters at small token counts), runs every float dtype
including fp32 (which cuSPARSELt does not take) and works on any GPU Triton supports; at large
token counts cuSPARSELt's sparse tensor cores should win (``cusparselt`` has the higher
priority for ``semi24``). N and M are compile-time constants, so each pattern gets its own
specialised kernel from one source. The same kernel computes grad_x = grad_y W by walking the
tiles transposed; the gradient of the kept values is the dense product gathered on the support.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..backends import register_backend, triton_unsupported
from ..formats.nm import NMSparseLinear, index_bits
from ..formats.semi24 import Semi24Linear
from ..sparse_support import cached_per_version, kept_values_linear
from ._tuning import autotune, autotune_configs, dot_precision

# Triton pipelines the raw a/value/metadata loads (not the expanded tile): (T64, C128, R64) needed
# 196,608 B in fp32, over A100's limit, so the reduction step is 32 wide; the last, small tile is
# fp32-IEEE's (no tensor cores: FMA dots hold whole tiles in registers). See docs/kernels-compiled.md.
_CONFIGS = [
    {"BLOCK_T": 64, "BLOCK_C": 64, "BLOCK_R": 32},
    {"BLOCK_T": 128, "BLOCK_C": 64, "BLOCK_R": 32},
    {"BLOCK_T": 64, "BLOCK_C": 128, "BLOCK_R": 32},
    {"BLOCK_T": 32, "BLOCK_C": 32, "BLOCK_R": 32, "num_stages": 2},
]


@autotune(configs=autotune_configs(_CONFIGS), key=["n_out", "n_in", "tokens_bucket", "TRANSPOSE"])
@triton.jit
def _nm_kernel(a_ptr, values_ptr, meta_ptr, y_ptr, tokens, tokens_bucket, n_out, n_in,
               stride_a, stride_y, TRANSPOSE: tl.constexpr, PRECISION: tl.constexpr,
               N: tl.constexpr, M: tl.constexpr, BITS: tl.constexpr,
               BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_R: tl.constexpr):  # fmt: skip
    """y = a Wᵀ (reduce over in, TRANSPOSE=False) or y = a W (reduce over out, TRANSPOSE=True)."""
    pid_t, pid_c = tl.program_id(0), tl.program_id(1)
    reduce_len = n_out if TRANSPOSE else n_in
    out_len = n_in if TRANSPOSE else n_out
    offs_t = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)
    offs_c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    acc = tl.zeros((BLOCK_T, BLOCK_C), dtype=tl.float32)
    for r0 in range(0, reduce_len, BLOCK_R):
        offs_r = r0 + tl.arange(0, BLOCK_R)
        a = tl.load(
            a_ptr + offs_t[:, None].to(tl.int64) * stride_a + offs_r[None, :],
            mask=(offs_t[:, None] < tokens) & (offs_r[None, :] < reduce_len),
            other=0.0,
        )
        # The (BLOCK_R, BLOCK_C) tile of Wᵀ (forward) or W (transpose), as (row o, column k) of W.
        if TRANSPOSE:
            o, k = offs_r[:, None], offs_c[None, :]
        else:
            o, k = offs_c[None, :], offs_r[:, None]
        inside = (o < n_out) & (k < n_in)
        group = k // M
        meta = tl.load(meta_ptr + o.to(tl.int64) * (n_in // M) + group, mask=inside, other=0)
        meta = meta.to(tl.int64) if N * BITS > 31 else meta.to(tl.int32)
        kept = values_ptr + o.to(tl.int64) * (n_in // M * N) + N * group
        pos = k % M
        w = tl.zeros((BLOCK_R, BLOCK_C), dtype=values_ptr.dtype.element_ty)
        for j in tl.static_range(N):
            v = tl.load(kept + j, mask=inside, other=0.0)
            w = tl.where(pos == ((meta >> (j * BITS)) & ((1 << BITS) - 1)), v, w)
        acc += tl.dot(a, w, input_precision=PRECISION)
    y = y_ptr + offs_t[:, None].to(tl.int64) * stride_y + offs_c[None, :]
    tl.store(y, acc.to(y_ptr.dtype.element_ty), mask=(offs_t[:, None] < tokens) & (offs_c[None, :] < out_len))


_META_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64)


def nm_metadata(layer) -> torch.Tensor:
    """(out, in/M) packed kept positions (i_0 | i_1 << bits | ...) of each group, cached per support."""
    n, m = layer.group_shape
    bits = index_bits(m)

    def build():
        within = (layer.cols % m).view(layer.out_features, layer.in_features // m, n)
        packed = sum(within[..., j] << (j * bits) for j in range(n))
        dtype = next(d for d in _META_DTYPES if n * bits <= 8 * d.itemsize)
        return packed.to(dtype)

    return cached_per_version(layer, "_nm_meta_cache", (layer.cols,), build)


def _nm_apply(a, values, meta, layer, transpose):
    a = a.contiguous()
    n_out, n_in = layer.out_features, layer.in_features
    (n, m), tokens = layer.group_shape, a.shape[0]
    y = a.new_empty(tokens, n_in if transpose else n_out)
    grid = lambda meta_: (triton.cdiv(tokens, meta_["BLOCK_T"]), triton.cdiv(y.shape[1], meta_["BLOCK_C"]))
    _nm_kernel[grid](
        a,
        values,
        meta,
        y,
        tokens,
        triton.next_power_of_2(tokens),
        n_out,
        n_in,
        a.stride(0),
        y.stride(0),
        TRANSPOSE=transpose,
        PRECISION=dot_precision(a.dtype),
        N=n,
        M=m,
        BITS=index_bits(m),
    )
    return y


@register_backend(NMSparseLinear, "triton", priority=5, unsupported=triton_unsupported)
@register_backend(Semi24Linear, "triton", priority=5, unsupported=triton_unsupported)
def nm_triton(layer, x2d):
    """``x2d @ W.T`` through the Triton N:M kernel; grad_x by the same kernel transposed."""
    meta = nm_metadata(layer)
    return kept_values_linear(
        layer,
        x2d,
        forward=lambda x, values: _nm_apply(x, values, meta, layer, transpose=False),
        grad_input=lambda grad_y, values: _nm_apply(grad_y, values, meta, layer, transpose=True),
    )
