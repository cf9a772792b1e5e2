"""Kronecker product W = A ⊗ B, projected by the Van Loan–Pitsianis nearest Kronecker product.

A is (m1, n1) and B is (m2, n2) with out = m1·m2 and in = n1·n2, so
W[i1·m2 + i2, j1·n2 + j2] = A[i1, j1]·B[i2, j2]. This is exactly a 2-core tensor train of rank 1
(cores A and B with unit bonds), so the layer reuses the TT forward (x·Bᵀ per row block, then A·z:
the dense matrix is never formed) and TT-SVD, which for d = 2, r = 1 is Van Loan–Pitsianis: the
rank-1 SVD of the rearrangement R(W)[(i1, j1), (i2, j2)] = W[i1·m2 + i2, j1·n2 + j2], optimal in
Frobenius norm (error = root-sum-square of R(W)'s singular values after the first).
"""

from __future__ import annotations

import math

from ..base import register_format
from ..validation import divisors
from .tt import TTLinear, resolve_factors


def split_imbalance(out_factors, in_factors) -> float:
    """0 for equal square cores: log(largest core / smallest core) + Σ_k |log(m_k / n_k)|.

    The thesis's split: 1296 = 36·36 gives A, B both 36x36 (imbalance 0). Balanced cores also
    make the forward cheapest (the two mode products cost 2·tokens·(n1·m2·n2 + m1·n1·m2)).
    """
    sizes = [m * n for m, n in zip(out_factors, in_factors)]
    spread = math.log(max(sizes) / min(sizes)) + sum(abs(math.log(m / n)) for m, n in zip(out_factors, in_factors))
    return round(spread, 9)  # equal splits compare equal despite float rounding


@register_format
class KroneckerLinear(TTLinear):
    """W = A ⊗ B with ``out_factors`` (m1, m2) and ``in_factors`` (n1, n2); params m1·n1 + m2·n2.

    Factors default to the most balanced split of each dimension, as for ``tt`` (out's
    descending, in's ascending). ``hparams_for_budget`` takes, among the splits that fit, one
    with no factor of 1 if any, then the most balanced (:func:`split_imbalance`), then the most
    parameters: a factor of 1 makes A a row/column vector, which neither compresses like the
    thesis's 36x36 ⊗ 36x36 nor saves FLOPs.
    Stored as ``cores[0]`` = A and ``cores[1]`` = B, each with unit TT bonds (1, m_k, n_k, 1).
    """

    name = "kronecker"
    hparam_names = ("out_factors", "in_factors")

    @classmethod
    def _check_hparams(cls, in_features, out_features, out_factors=None, in_factors=None):
        out_factors, in_factors = resolve_factors(in_features, out_features, out_factors, in_factors, 2)
        return {"out_factors": out_factors, "in_factors": in_factors}

    @classmethod
    def structure(cls, hp):
        return hp["out_factors"], hp["in_factors"], (1,)

    @classmethod
    def hparam_grid(cls, in_features, out_features):
        return [
            {"out_factors": (m1, out_features // m1), "in_factors": (n1, in_features // n1)}
            for m1 in divisors(out_features)
            for n1 in divisors(in_features)
        ]

    @classmethod
    def budget_preference(cls, in_features, out_features, hp):
        """No unit factor first, then the most balanced split (see :func:`split_imbalance`)."""
        return (
            *super().budget_preference(in_features, out_features, hp),
            -split_imbalance(hp["out_factors"], hp["in_factors"]),
        )

    @property
    def A(self):
        """The left (m1, n1) factor."""
        return self.cores[0][0, :, :, 0]

    @property
    def B(self):
        """The right (m2, n2) factor."""
        return self.cores[1][0, :, :, 0]
