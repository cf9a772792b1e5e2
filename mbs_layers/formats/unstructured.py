"""Unstructured sparsity: W = M ⊙ V keeping nnz = max(1, round(density·out·in)) entries anywhere.

``round`` is Python's (half to even). Projection keeps the nnz largest magnitudes, which is
the optimal Frobenius approximation with that many non-zeros. Stored as CSR with int32
column indices and (out + 1) int32 row pointers, the layout the ``cusparse`` backend hands
to cuSPARSE.
"""

from __future__ import annotations

from ..base import register_format
from ..sparse_support import SparseSupportLinear, random_subset, sorted_topk
from ..validation import check_float, check_int
from ._calibration import weighted_magnitude
from .lowrank import geometric_grid

INDEX_BYTES = 4  # int32 CSR indices, as the cusparse backend builds them


def density_nnz(density: float, total: int) -> int:
    """Kept entries out of ``total`` at ``density``: Python's round, at least one."""
    return max(1, round(density * total))


def check_density(density) -> float:
    """``density`` is required and must lie in (0, 1]."""
    if density is None:
        raise ValueError("density is required: allowed 0 < density <= 1")
    return check_float("density", density, low=0.0, high=1.0, low_open=True)


@register_format
class UnstructuredLinear(SparseSupportLinear):
    """Any in/out; hparam ``density`` in (0, 1]; params nnz = max(1, round(density·in·out))."""

    name = "unstructured"
    hparam_names = ("density",)
    data_aware = True
    projection_scores = staticmethod(weighted_magnitude)

    @classmethod
    def _check_hparams(cls, in_features, out_features, density=None):
        return {"density": check_density(density)}

    @classmethod
    def count_params(cls, in_features, out_features, density):
        return density_nnz(density, in_features * out_features)

    @classmethod
    def hparam_grid(cls, in_features, out_features):
        total = in_features * out_features
        return [{"density": nnz / total} for nnz in geometric_grid(total) if nnz >= total // 100]

    @classmethod
    def hparams_for_budget(cls, in_features, out_features, params):
        """Every nnz is representable, so the budget is met exactly (the reference lower bound
        must not lose to a coarse grid)."""
        check_int("params", params, low=1)
        total = check_int("in_features", in_features, low=1) * check_int("out_features", out_features, low=1)
        return {"density": min(params, total) / total}

    def _select_support(self, scores):
        return sorted_topk(scores, self.nnz())

    def _random_support(self, device):
        """Top-k of uniform noise is a uniform k-subset: drawn directly, without an (out, in) tensor."""
        return random_subset(self.in_features * self.out_features, self.nnz(), device)

    def storage_bytes(self):
        nnz = self.nnz()
        return nnz * self.weight_dtype.itemsize + INDEX_BYTES * (nnz + self.out_features + 1)
