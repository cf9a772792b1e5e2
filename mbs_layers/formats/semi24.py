"""2:4 semi-structured sparsity: in every group of 4 consecutive inputs of a row, 2 are kept.

The fixed 2:4 case of ``nm`` (same support rule, storage and Triton kernel), kept as its own
format because it is the pattern NVIDIA's sparse tensor cores (cuSPARSELt) run.
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

from ..base import register_format
from .nm import GroupSparseLinear, check_in_features_multiple

GROUP, KEPT = 4, 2


@register_format
class Semi24Linear(GroupSparseLinear):
    """No hparams; in_features divisible by 4; params out·in/2."""

    name = "semi24"
    group_shape = (KEPT, GROUP)

    @classmethod
    def _check_hparams(cls, in_features, out_features):
        check_in_features_multiple(in_features, GROUP, "2:4")
        return {}

    @classmethod
    def count_params(cls, in_features, out_features):
        return in_features * out_features * KEPT // GROUP

    @classmethod
    def hparam_grid(cls, in_features, out_features):
        cls._check_hparams(in_features, out_features)
        return [{}]

    def dense_equivalent_flops(self, tokens: int) -> int:
        """2·out·in·tokens: the dense product's FLOPs, the unit of 2:4 '2× TFLOP/s' peaks."""
        return 2 * self.in_features * self.out_features * tokens
