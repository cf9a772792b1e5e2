"""cuSPARSE CSR backend for ``unstructured``: the honest baseline a PyTorch user would reach for.

The forward is ``torch.sparse`` CSR @ dense (cuSPARSE SpMM) with int32 indices, the layout
``UnstructuredLinear.storage_bytes`` counts. grad_x multiplies by Wᵀ held as a second CSR
(the transposed index lists, built once per support; the values are gathered into it per call).
The gradient of the kept values is the dense product grad_yᵀ x gathered on the support:
cuSPARSE's sampled product (SDDMM) lacks half-precision support in PyTorch, the dense GEMM has it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..backends import register_backend
from ..formats.unstructured import UnstructuredLinear
from ..sparse_support import cached_per_version, kept_values_linear, segment_pointers

CUSPARSE_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def cusparse_unsupported(layer, x2d) -> str | None:
    """cuSPARSE needs a CUDA tensor of a float dtype it multiplies."""
    if x2d.dtype not in CUSPARSE_DTYPES:
        return f"dtype={x2d.dtype} is not supported by cuSPARSE: allowed {list(CUSPARSE_DTYPES)}"
    if x2d.device.type != "cuda":
        return f"cuSPARSE needs a CUDA tensor, got {x2d.device.type}"
    return None


@dataclass(frozen=True)
class CSRLayout:
    """int32 CSR index lists of W (out, in) and of Wᵀ, with Wᵀ's values as a gather of W's."""

    crow: torch.Tensor
    col: torch.Tensor
    crow_t: torch.Tensor
    col_t: torch.Tensor
    perm_t: torch.Tensor  # values of Wᵀ in CSR order = values[perm_t]


def csr_layout(layer) -> CSRLayout:
    """The layer's CSR index lists, rebuilt only when its support buffers change."""
    rows, cols = layer.rows, layer.cols

    def build():
        perm_t = torch.argsort(cols * layer.out_features + rows)
        return CSRLayout(
            crow=segment_pointers(rows, layer.out_features),
            col=cols.to(torch.int32),
            crow_t=segment_pointers(cols, layer.in_features),
            col_t=rows[perm_t].to(torch.int32),
            perm_t=perm_t,
        )

    return cached_per_version(layer, "_csr_layout_cache", (rows, cols), build)


def _csr_times_t(crow, col, values, shape, dense):
    """(CSR matrix @ denseᵀ)ᵀ = dense @ CSRᵀ."""
    matrix = torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)
    return (matrix @ dense.T).T


@register_backend(UnstructuredLinear, "cusparse", priority=5, unsupported=cusparse_unsupported)
def unstructured_cusparse(layer, x2d):
    """``x2d @ W.T`` through cuSPARSE CSR SpMM; grad_x through Wᵀ's CSR."""
    csr, shape = csr_layout(layer), (layer.out_features, layer.in_features)
    return kept_values_linear(
        layer,
        x2d,
        forward=lambda x, values: _csr_times_t(csr.crow, csr.col, values, shape, x),
        grad_input=lambda grad_y, values: _csr_times_t(csr.crow_t, csr.col_t, values[csr.perm_t], shape[::-1], grad_y),
    )
