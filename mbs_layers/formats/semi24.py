"""2:4 semi-structured sparsity: in every group of 4 consecutive inputs of a row, 2 are kept.

in_features must be divisible by 4. Projection keeps the 2 largest magnitudes of each group,
the optimal approximation with this pattern (the error is the root-sum-square of the dropped
entries). Storage follows cuSPARSELt's compressed layout: the out·in/2 kept values plus 2 bits
of metadata per kept value (its position within its group of 4).

FLOPs: ``forward_flops`` counts the multiply-adds on kept values, 2·(out·in/2)·tokens, which is
what the reference executes and what 2:4 sparse tensor cores execute;
``dense_equivalent_flops`` is the dense product's 2·out·in·tokens that NVIDIA's "2× sparse
TFLOP/s" figures are quoted in.
"""
from __future__ import annotations

import torch

from ..base import register_format
from ..sparse_support import SparseSupportLinear

GROUP, KEPT = 4, 2
METADATA_BITS_PER_VALUE = 2


@register_format
class Semi24Linear(SparseSupportLinear):
    """No hparams; in_features divisible by 4; params out·in/2."""

    name = "semi24"

    @classmethod
    def _check_hparams(cls, in_features, out_features):
        if in_features % GROUP:
            raise ValueError(
                f"in_features={in_features} must be divisible by {GROUP} for 2:4 sparsity: "
                f"allowed in_features in multiples of {GROUP}"
            )
        return {}

    @classmethod
    def count_params(cls, in_features, out_features):
        return in_features * out_features * KEPT // GROUP

    @classmethod
    def hparam_grid(cls, in_features, out_features):
        cls._check_hparams(in_features, out_features)
        return [{}]

    def _select_support(self, scores):
        m, n = scores.shape
        groups = scores.reshape(m, n // GROUP, GROUP)
        within = groups.topk(KEPT, dim=-1, sorted=False).indices.sort(dim=-1).values
        group_start = torch.arange(0, n, GROUP, device=scores.device)
        row_start = torch.arange(0, m * n, n, device=scores.device)
        return (within + group_start[:, None] + row_start[:, None, None]).flatten()

    def storage_bytes(self):
        nnz = self.nnz()
        return nnz * self.weight_dtype.itemsize + nnz * METADATA_BITS_PER_VALUE // 8

    def dense_equivalent_flops(self, tokens: int) -> int:
        """2·out·in·tokens: the dense product's FLOPs, the unit of 2:4 '2× TFLOP/s' peaks."""
        return 2 * self.in_features * self.out_features * tokens
