"""N:M sparsity: in every group of M consecutive inputs of an output row, N are kept.

Hyper-parameters ``n`` and ``m`` with M ∈ {2, 4, 8, 16} and 1 ≤ N < M; in_features must be a
multiple of M. 2:4 is the pattern of NVIDIA's sparse tensor cores (``semi24`` is its fixed
special case, sharing this module's machinery and Triton kernel); 1:4, 2:8, 4:8 and other
ratios are the general N:M patterns of Zhou et al. 2021 ("Learning N:M Fine-grained Structured
Sparse Neural Networks From Scratch") and the DominoSearch / N:M transposable line of work.

Projection keeps the N largest magnitudes of each group, the optimal approximation with this
pattern (the error is the root-sum-square of the dropped entries); with calibration
activations X the N largest |W_ij|·√H_jj (H = diag(XᵀX)/tokens), optimal for the diagonal
proxy. Storage: the out·in·N/M kept values plus ⌈log₂ M⌉ index bits per kept value (its
position within its group), packed, rounded up to whole bytes for the layer.
"""

from __future__ import annotations

import math

import torch

from ..base import register_format
from ..sparse_support import SparseSupportLinear
from ..validation import check_choice, check_int
from ._calibration import weighted_magnitude

ALLOWED_M = (2, 4, 8, 16)


def index_bits(m: int) -> int:
    """Bits that address a position within a group of ``m``."""
    return (m - 1).bit_length()


def check_in_features_multiple(in_features: int, m: int, pattern: str) -> None:
    """in_features must be a multiple of the group size ``m`` of ``pattern``."""
    if in_features % m:
        raise ValueError(
            f"in_features={in_features} must be divisible by {m} for {pattern} sparsity: "
            f"allowed in_features in multiples of {m}"
        )


def top_in_groups(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Positions (rows, cols/m, n), within each group of ``m`` consecutive entries of a row, of
    the group's ``n`` largest ``scores`` (unordered)."""
    rows, cols = scores.shape
    return scores.reshape(rows, cols // m, m).topk(n, dim=-1, sorted=False).indices


class GroupSparseLinear(SparseSupportLinear):
    """Shared by the N:M formats: ``group_shape`` (N, M) decides counts, support and storage."""

    data_aware = True
    projection_scores = staticmethod(weighted_magnitude)

    @property
    def group_shape(self) -> tuple[int, int]:
        """(N, M): N kept per group of M consecutive inputs."""
        raise NotImplementedError

    def _select_support(self, scores):
        (n, m), (rows, cols) = self.group_shape, scores.shape
        within = top_in_groups(scores, n, m).sort(dim=-1).values
        group_start = torch.arange(0, cols, m, device=scores.device)
        row_start = torch.arange(0, rows * cols, cols, device=scores.device)
        return (within + group_start[:, None] + row_start[:, None, None]).flatten()

    def storage_bytes(self):
        nnz = self.nnz()
        return nnz * self.weight_dtype.itemsize + math.ceil(nnz * index_bits(self.group_shape[1]) / 8)


@register_format
class NMSparseLinear(GroupSparseLinear):
    """hparams ``n`` (1 ≤ n < m) and ``m`` in {2, 4, 8, 16}; m ∣ in_features; params out·in·n/m."""

    name = "nm"
    hparam_names = ("n", "m")

    @classmethod
    def _check_hparams(cls, in_features, out_features, n=None, m=None):
        if m is None or n is None:
            raise ValueError(f"n and m are required: allowed m in {list(ALLOWED_M)} and 1 <= n < m")
        check_choice("m", check_int("m", m), ALLOWED_M)
        n = check_int("n", n, low=1, high=m - 1)
        check_in_features_multiple(in_features, m, f"{n}:{m}")
        return {"n": n, "m": m}

    @classmethod
    def count_params(cls, in_features, out_features, n, m):
        return out_features * in_features // m * n

    @classmethod
    def hparam_grid(cls, in_features, out_features):
        """Every (n, m) with m ∣ in_features. Among equal counts the budget search keeps the first:
        the smallest group of at least 4 (2:4 at 50 %, 1:4 at 25 %, the sparse-tensor-core group,
        fewest index bits), 1:2 last."""
        groups = sorted((m for m in ALLOWED_M if in_features % m == 0), key=lambda m: (m < 4, m))
        return [{"n": n, "m": m} for m in groups for n in range(1, m)]

    @property
    def group_shape(self):
        return self.hp["n"], self.hp["m"]
