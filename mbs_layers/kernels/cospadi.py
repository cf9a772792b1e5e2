"""CoSpaDi's fast path: a dense GEMM to the atom activations, then a Triton gather kernel.

y = x Ŵᵀ with Ŵ = Sᵀ Dᵀ (``formats/cospadi.py``) is computed as z = x Dᵀ (tokens, atoms) on
cuBLAS, then y[t, o] = Σ_j z[t, code_index[o, j]] · codes[o, j]: every output reads the s
columns of z its codes name. One program owns a (BLOCK_T, BLOCK_O) tile of y and accumulates
the s gathered columns in fp32 registers (no shared memory is staged, so every config fits
A100's 163 KiB; the z rows of a token block stay in L1/L2 across the s gathers). This is
CUDA-core work: at s ≪ atoms it is far smaller than z's GEMM, which dominates.

Backward: grad_z = grad_y S (a dense GEMM with the (out, atoms) code matrix) and the codes'
gradient is (grad_yᵀ z) gathered at the code indices (one dense GEMM, as the sparse formats'
kept-value gradients do); the dictionary's gradient follows from z = x Dᵀ through autograd.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..backends import register_backend, triton_unsupported
from ..formats.cospadi import CoSpaDiLinear
from ._tuning import autotune, autotune_configs

_CONFIGS = [  # fp32 accumulators in registers only: (BLOCK_T · BLOCK_O) / (32 · warps) per thread
    {"BLOCK_T": 32, "BLOCK_O": 64},
    {"BLOCK_T": 64, "BLOCK_O": 64},
    {"BLOCK_T": 16, "BLOCK_O": 128},
    {"BLOCK_T": 128, "BLOCK_O": 64, "num_warps": 8},
    {"BLOCK_T": 64, "BLOCK_O": 128, "num_warps": 8},
]


@autotune(configs=autotune_configs(_CONFIGS, stages=1), key=["tokens_bucket", "n_out", "sparsity"])
@triton.jit
def _gather_kernel(z_ptr, index_ptr, codes_ptr, y_ptr, tokens, tokens_bucket, n_out, sparsity,
                   stride_z, stride_y, BLOCK_T: tl.constexpr, BLOCK_O: tl.constexpr):  # fmt: skip
    """y[t, o] = Σ_j z[t, index[o, j]] · codes[o, j] (index and codes (n_out, sparsity), contiguous)."""
    offs_t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    offs_o = tl.program_id(1) * BLOCK_O + tl.arange(0, BLOCK_O)
    in_t, in_o = offs_t < tokens, offs_o < n_out
    rows = z_ptr + offs_t[:, None].to(tl.int64) * stride_z
    acc = tl.zeros((BLOCK_T, BLOCK_O), dtype=tl.float32)
    for j in range(sparsity):
        code = offs_o.to(tl.int64) * sparsity + j
        atom = tl.load(index_ptr + code, mask=in_o, other=0)
        value = tl.load(codes_ptr + code, mask=in_o, other=0.0).to(tl.float32)
        z = tl.load(rows + atom[None, :], mask=in_t[:, None] & in_o[None, :], other=0.0)
        acc += z.to(tl.float32) * value[None, :]
    y = y_ptr + offs_t[:, None].to(tl.int64) * stride_y + offs_o[None, :]
    tl.store(y, acc.to(y_ptr.dtype.element_ty), mask=in_t[:, None] & in_o[None, :])


def gather_codes(z: torch.Tensor, codes: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """y (tokens, out) with y[:, o] = Σ_j z[:, index[o, j]] · codes[o, j], by the Triton kernel."""
    z, codes, index = z.contiguous(), codes.contiguous(), index.contiguous()
    tokens, (n_out, sparsity) = z.shape[0], codes.shape
    y = z.new_empty(tokens, n_out)
    grid = lambda meta: (triton.cdiv(tokens, meta["BLOCK_T"]), triton.cdiv(n_out, meta["BLOCK_O"]))
    _gather_kernel[grid](
        z, index, codes, y, tokens, triton.next_power_of_2(tokens), n_out, sparsity, z.stride(0), y.stride(0)
    )
    return y


class _GatherCodes(torch.autograd.Function):
    """y = gather_codes(z, codes, index), differentiable in z and codes."""

    @staticmethod
    def forward(ctx, z, codes, index):
        ctx.save_for_backward(z, codes, index)
        return gather_codes(z, codes, index)

    @staticmethod
    def backward(ctx, grad_y):
        z, codes, index = ctx.saved_tensors
        index = index.long()
        grad_z = grad_codes = None
        if ctx.needs_input_grad[0]:
            code_matrix = codes.new_zeros(codes.shape[0], z.shape[1]).scatter_add(1, index, codes)
            grad_z = grad_y @ code_matrix
        if ctx.needs_input_grad[1]:
            grad_codes = (grad_y.T @ z).gather(1, index)
        return grad_z, grad_codes, None


@register_backend(CoSpaDiLinear, "triton", priority=5, unsupported=triton_unsupported)
def cospadi_triton(layer, x2d):
    """z = x Dᵀ on cuBLAS, then the gather kernel over the codes."""
    return _GatherCodes.apply(x2d @ layer.dictionary.T, layer.codes, layer.code_index)
