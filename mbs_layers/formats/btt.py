"""Block tensor-train (BTT, Qiu et al. 2024), two cores: a grid of rank-r blocks in a shuffled order.

With in = n1·n2 and out = m1·m2, row ``i1·m2 + i2`` and column ``j1·n2 + j2`` of W are
    W[(i1, i2), (j1, j2)] = sum_rho L[i2, i1, j1, rho] · R[j1, i2, rho, j2],
so block (i2, j1) — rows ``i2::m2``, columns ``j1·n2 : (j1+1)·n2`` — is the rank-r product
L[i2, :, j1, :] @ R[j1, i2]. The blocks share no parameters, hence the projection (a rank-r
truncated SVD of every block) is optimal.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..base import StructuredLinear, register_format
from ..chunking import by_row_chunks, memory_limit
from ..validation import check_int, divisors
from .lowrank import rank_grid, truncated_svd


def block_grid(weight: torch.Tensor, row_groups: int, col_groups: int) -> torch.Tensor:
    """Blocks (row_groups, col_groups, out/row_groups, in/col_groups) of ``weight``.

    Block (i, j) holds rows ``i::row_groups`` (a stride-permuted residue class) and the
    contiguous columns ``j·in/col_groups ...``: the grid in which Monarch and BTT are low-rank.
    """
    out_f, in_f = weight.shape
    return weight.reshape(out_f // row_groups, row_groups, col_groups, in_f // col_groups).permute(1, 2, 0, 3)


def blockwise_truncated_svd(blocks: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``truncated_svd`` of every trailing (rows, cols) matrix of ``blocks`` at once."""
    lead, (rows, cols) = blocks.shape[:-2], blocks.shape[-2:]
    left, right = torch.func.vmap(truncated_svd, in_dims=(0, None))(blocks.reshape(-1, rows, cols), rank)
    return left.reshape(*lead, rows, rank), right.reshape(*lead, rank, cols)


def near_square_factors(n: int) -> tuple[int, int]:
    """(a, b) with a·b = n, a <= b and a as large as possible."""
    a = max(d for d in divisors(n) if d * d <= n)
    return a, n // a


def check_factors(name: str, factors, dim_name: str, dim: int) -> tuple[int, int]:
    """``factors`` must be a pair of positive ints whose product is ``dim``."""
    if not isinstance(factors, (tuple, list)) or len(factors) != 2:
        raise ValueError(f"{name} must be a pair (a, b) with a*b = {dim_name}={dim}, got {factors!r}")
    a, b = (check_int(name, f, low=1) for f in factors)
    if a * b != dim:
        pairs = [(d, dim // d) for d in divisors(dim)]
        raise ValueError(f"{name}={tuple(factors)} must multiply to {dim_name}={dim}: allowed {pairs}")
    return a, b


@register_format
class BTTLinear(StructuredLinear):
    """Two-core BTT: in = n1·n2, out = m1·m2 (``in_factors`` (n1, n2), ``out_factors`` (m1, m2),
    default near-square with n1 <= n2 and m2 <= m1); ``rank`` 1 <= r <= min(m1, n2);
    params r(out·n1 + m2·in)."""

    name = "btt"
    hparam_names = ("rank", "in_factors", "out_factors")

    @classmethod
    def _check_hparams(cls, in_features, out_features, rank=None, in_factors=None, out_factors=None):
        if in_factors is None:
            in_factors = near_square_factors(in_features)
        if out_factors is None:
            out_factors = near_square_factors(out_features)[::-1]
        n1, n2 = check_factors("in_factors", in_factors, "in_features", in_features)
        m1, m2 = check_factors("out_factors", out_factors, "out_features", out_features)
        if rank is None:
            raise ValueError(f"rank is required for btt: allowed 1 <= rank <= min(m1, n2) = {min(m1, n2)}")
        rank = check_int("rank", rank, low=1, high=min(m1, n2))
        return {"rank": rank, "in_factors": (n1, n2), "out_factors": (m1, m2)}

    @classmethod
    def count_params(cls, in_features, out_features, rank, in_factors=None, out_factors=None):
        hp = cls._check_hparams(in_features, out_features, rank, in_factors, out_factors)
        (n1, _), (_, m2) = hp["in_factors"], hp["out_factors"]
        return rank * (out_features * n1 + m2 * in_features)

    @classmethod
    def hparam_grid(cls, in_features, out_features):
        m1 = near_square_factors(out_features)[1]
        n2 = near_square_factors(in_features)[1]
        return [{"rank": r} for r in rank_grid(min(m1, n2))]

    def _init_weights(self, dtype=None, device=None):
        r, (n1, n2), (m1, m2) = self.hp["rank"], self.hp["in_factors"], self.hp["out_factors"]
        fk = {"dtype": dtype, "device": device}
        # R maps n2 inputs to unit-variance intermediates; L sums n1·r of them per output.
        self.R = nn.Parameter(torch.randn(n1, m2, r, n2, **fk) / math.sqrt(n2))
        self.L = nn.Parameter(torch.randn(m2, m1, n1, r, **fk) / math.sqrt(n1 * r))

    def _forward_torch(self, x2d):
        """Two batched GEMMs through the (tokens, n1, m2, r) middle; in row chunks where that middle
        (and its permuted copy) would outgrow x + y + weights (see ``mbs_layers.chunking``)."""
        n1, m2, r, _ = self.R.shape
        return by_row_chunks(self._forward_rows, x2d, 2 * n1 * m2 * r, memory_limit(self, x2d.shape[0]))

    def _forward_rows(self, x2d):
        n1, m2, r, n2 = self.R.shape
        m1 = self.L.shape[1]
        z = torch.bmm(x2d.reshape(-1, n1, n2).transpose(0, 1), self.R.reshape(n1, m2 * r, n2).transpose(1, 2))
        z = z.reshape(n1, -1, m2, r).permute(2, 1, 0, 3).reshape(m2, -1, n1 * r)
        y = torch.bmm(z, self.L.reshape(m2, m1, n1 * r).transpose(1, 2))
        return y.permute(1, 2, 0).reshape(-1, self.out_features)

    def dense_weight(self):
        return torch.einsum("xiyr,yxrj->ixyj", self.L, self.R).reshape(self.out_features, self.in_features)

    def forward_flops(self, tokens):
        return 2 * tokens * self.param_count()

    @torch.no_grad()
    def _project(self, weight):
        (n1, _), (_, m2) = self.hp["in_factors"], self.hp["out_factors"]
        left, right = blockwise_truncated_svd(block_grid(weight, m2, n1), self.hp["rank"])
        self.L.copy_(left.permute(0, 2, 1, 3))  # (m2, n1, m1, r) -> (m2, m1, n1, r)
        self.R.copy_(right.transpose(0, 1))  # (m2, n1, r, n2) -> (n1, m2, r, n2)
