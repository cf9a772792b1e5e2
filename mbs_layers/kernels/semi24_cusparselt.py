"""cuSPARSELt backend for ``semi24`` through ``torch._cslt_compress`` / ``torch._cslt_sparse_mm``.

The 2:4 weight is compressed once per weight version (cached on the layer, rebuilt when the
values or support change, e.g. after an optimiser step) and cuSPARSELt's algorithm id is
searched once per (out, in, padded tokens, dtype, device) and cached. cuSPARSELt prunes along
the reduction dimension only, so Wᵀ (needed for grad_x = grad_y W) is not 2:4: the backward
uses the dense product with the materialised 2:4 weight for grad_x and the dense product
grad_yᵀ x gathered on the support for the kept values.

What PyTorch's cuSPARSELt path accepts (``SparseSemiStructuredTensorCUSPARSELT``): float16
and bfloat16 (int8/fp8 too, not float formats of this library); the sparse operand's rows
(out_features) and columns (in_features) multiples of 16; the dense operand's dimensions
multiples of 8 (tokens are zero-padded here).
"""

from __future__ import annotations

import torch

from ..backends import register_backend
from ..formats.semi24 import Semi24Linear
from ..sparse_support import cached_per_version, kept_values_linear

CUSPARSELT_DTYPES = (torch.float16, torch.bfloat16)
SPARSE_MULTIPLE = 16  # out_features and in_features
DENSE_MULTIPLE = 8  # tokens (padded)

_ALG_IDS: dict[tuple, int] = {}


def cusparselt_unsupported(layer, x2d) -> str | None:
    """Why cuSPARSELt cannot run this layer on ``x2d`` (dtype, shape, device, build), else None."""
    if x2d.dtype not in CUSPARSELT_DTYPES:
        return f"dtype={x2d.dtype} is not supported by cuSPARSELt: allowed {list(CUSPARSELT_DTYPES)}"
    for name in ("in_features", "out_features"):
        if getattr(layer, name) % SPARSE_MULTIPLE:
            return (
                f"{name}={getattr(layer, name)} is not supported by cuSPARSELt: allowed multiples of {SPARSE_MULTIPLE}"
            )
    if x2d.device.type != "cuda":
        return f"cuSPARSELt needs a CUDA tensor, got {x2d.device.type}"
    if not torch.backends.cusparselt.is_available():
        return "this PyTorch build has no cuSPARSELt"
    return None


def compressed_weight(layer) -> torch.Tensor:
    """The layer's 2:4 weight in cuSPARSELt's compressed form, rebuilt when the weight changes."""

    @torch.no_grad()
    def build():
        return torch._cslt_compress(layer.dense_weight().contiguous())

    return cached_per_version(layer, "_cslt_cache", (layer.values, layer.rows, layer.cols), build)


def _cslt_linear(compressed: torch.Tensor, x2d: torch.Tensor, out_features: int) -> torch.Tensor:
    """x2d @ Wᵀ = (W x2dᵀ)ᵀ with tokens zero-padded to a multiple of 8 and the best algorithm id."""
    tokens = x2d.shape[0]
    pad = -tokens % DENSE_MULTIPLE
    dense = torch.nn.functional.pad(x2d, (0, 0, 0, pad)) if pad else x2d.contiguous()
    key = (out_features, x2d.shape[1], tokens + pad, x2d.dtype, x2d.device)
    if key not in _ALG_IDS:
        _ALG_IDS[key] = int(torch._cslt_sparse_mm_search(compressed, dense.T, transpose_result=True))
    y = torch._cslt_sparse_mm(compressed, dense.T, transpose_result=True, alg_id=_ALG_IDS[key])
    return y[:tokens] if pad else y


@register_backend(Semi24Linear, "cusparselt", priority=10, unsupported=cusparselt_unsupported)
def semi24_cusparselt(layer, x2d):
    """``x2d @ W.T`` through cuSPARSELt's 2:4 sparse GEMM; grad_x by a dense GEMM with W."""
    return kept_values_linear(
        layer,
        x2d,
        forward=lambda x, values: _cslt_linear(compressed_weight(layer), x, layer.out_features),
        grad_input=lambda grad_y, values: grad_y @ layer.dense_weight(),
    )
