"""Constant fan-in sparsity: every output row keeps the same number ``fan_in`` of its inputs.

The structure of SRigL (Lasby et al. 2024, "Dynamic Sparse Training with Structured Sparsity",
ICLR): unstructured within a row, but equal row lengths, so the support is a dense (out, fan_in)
table of column indices (ELL without padding) and every output costs the same work. Projection
keeps each row's ``fan_in`` largest magnitudes, the optimal approximation with this pattern (rows
are independent); with calibration activations X the largest |W_ij|·√H_jj (H = diag(XᵀX)/tokens),
optimal for the diagonal proxy. Storage: the out·fan_in values plus one int32 column index each
(no row pointers: row o's entries are positions o·fan_in ... (o+1)·fan_in − 1).
"""

from __future__ import annotations

import torch

from ..base import register_format
from ..sparse_support import SparseSupportLinear
from ..validation import check_int
from ._calibration import weighted_magnitude
from .unstructured import INDEX_BYTES


@register_format
class FanInLinear(SparseSupportLinear):
    """hparam ``fan_in`` in 1..in_features; params out·fan_in; any shape."""

    name = "fanin"
    hparam_names = ("fan_in",)
    data_aware = True
    projection_scores = staticmethod(weighted_magnitude)

    @classmethod
    def _check_hparams(cls, in_features, out_features, fan_in=None):
        if fan_in is None:
            raise ValueError(f"fan_in is required: allowed 1 <= fan_in <= in_features={in_features}")
        return {"fan_in": check_int("fan_in", fan_in, low=1, high=in_features)}

    @classmethod
    def count_params(cls, in_features, out_features, fan_in):
        return out_features * fan_in

    @classmethod
    def hparam_grid(cls, in_features, out_features):
        """Every fan-in: the count is a formula, so the budget search sees every setting."""
        return [{"fan_in": k} for k in range(1, in_features + 1)]

    def _select_support(self, scores):
        rows, cols = scores.shape
        within = scores.topk(self.hp["fan_in"], dim=1, sorted=False).indices.sort(dim=1).values
        return (within + torch.arange(0, rows * cols, cols, device=scores.device)[:, None]).flatten()

    def storage_bytes(self):
        nnz = self.nnz()
        return nnz * self.weight_dtype.itemsize + INDEX_BYTES * nnz
