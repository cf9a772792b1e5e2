"""Triton backend for ``fanin``: a gather over the (out, fan_in) column-index table.

Constant fan-in makes the support an ELL table without padding, exactly what the sparse
epilogue of the low-rank chain (``kernels/lowrank.py``, written for SLTrain) reads:
y[:, o] = Σ_s x[:, idx[o, s]] · values[pos[o, s]]. The forward runs that epilogue alone
(``_ell_kernel`` through ``ell_accumulate``); grad_x = grad_y W runs it on the transposed, padded ELL table (input
column → the outputs that read it, built by SLTrain's ``ell_table``), and the kept values'
gradient is SLTrain's sampled product (SDDMM) gathering grad_y and x on the support. No tensor
cores: each output gathers fan_in scattered inputs, so this pays off at low fan-in where dense
GEMM wastes most of its work.
"""

from __future__ import annotations

import torch

from ..backends import register_backend, triton_unsupported
from ..formats.fanin import FanInLinear
from ..sparse_support import cached_per_version
from .lowrank import ell_accumulate
from .sltrain import ell_table, sampled_grad


def fanin_tables(layer) -> dict:
    """Forward table (out, fan_in) and backward padded ELL (in, longest column), cached per support."""

    def build():
        out_f, k = layer.out_features, layer.hp["fan_in"]
        positions = torch.arange(out_f * k, dtype=torch.int32, device=layer.cols.device).view(out_f, k)
        return {
            "fwd": (layer.cols.view(out_f, k).to(torch.int32), positions),
            "bwd": ell_table(layer.cols, layer.rows, layer.in_features),
            "rows": layer.rows.to(torch.int32),
            "cols": layer.cols.to(torch.int32),
        }

    return cached_per_version(layer, "_fanin_tables", (layer.rows, layer.cols), build)


class _FanInFn(torch.autograd.Function):
    """y = x Wᵀ with W's values on a constant fan-in support."""

    @staticmethod
    def forward(ctx, x, values, tables, out_features):
        x = x.contiguous()
        y = x.new_zeros(x.shape[0], out_features)
        ell_accumulate(x, y, (*tables["fwd"], values))
        ctx.tables = tables
        ctx.save_for_backward(x, values)
        return y

    @staticmethod
    def backward(ctx, gy):
        x, values = ctx.saved_tensors
        gy, tables = gy.contiguous(), ctx.tables
        gx = gv = None
        if ctx.needs_input_grad[0]:
            gx = gy.new_zeros(x.shape)
            ell_accumulate(gy, gx, (*tables["bwd"], values))
        if ctx.needs_input_grad[1]:
            gv = sampled_grad(gy, x, tables["rows"], tables["cols"], values.dtype)
        return gx, gv, None, None


@register_backend(FanInLinear, "triton", priority=5, unsupported=triton_unsupported)
def fanin_triton(layer, x2d):
    """``x2d @ W.T`` through the ELL gather kernel (forward and grad_x) and SDDMM (values)."""
    return _FanInFn.apply(x2d, layer.values, fanin_tables(layer), layer.out_features)
