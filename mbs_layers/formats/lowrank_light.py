"""Low-Rank Light: W = U [I_r | V] ("Memory Better Spent"), the rank-r format with r² fewer values.

Any rank-r matrix whose first r columns are linearly independent can be written as
U [I_r | V] with U = W[:, :r] and V = U⁺ W[:, r:], so the format stores r(m + n − r)
values where Low-Rank stores r(m + n): at an equal budget it affords a larger rank.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..base import register_format
from .lowrank import RankFormat, full_svd, whitened_svd


def ridge_strength(dtype: torch.dtype) -> float:
    """Relative ridge ρ: leading-block directions weaker than ρ·σ₁ are not inverted.

    ρ is the weight dtype's resolution (no larger V entry is representable without losing the
    identity part to cancellation in ``x[:, :r] + x[:, r:] Vᵀ``), but at least √eps(float64)
    so the float64 solves below stay accurate.
    """
    return float(max(torch.finfo(dtype).eps, torch.finfo(torch.float64).eps ** 0.5))


def light_factors(weight: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(U, V) with U [I | V] the truncated SVD of ``weight`` re-expressed, ridge-stabilised.

    With W_r = P S Q the rank-r SVD and Q = [Q₁ | Q₂], the exact re-expression is
    V = Q₁⁻¹ Q₂, U = P S Q₁. Q₁ may be ill-conditioned (or singular), so V solves the
    ridge problem min ‖S (Q₁ V − Q₂)‖² + λ‖V‖² with λ = (ρ σ₁)² (``ridge_strength``); the
    first term is exactly the error V adds to the SVD's. U is then the least-squares optimum
    for that V, ‖W − U [I | V]‖ minimal, so the error never exceeds ‖W‖. With a
    well-conditioned Q₁ the ridge bias is O(ρ² κ²) and the result is the SVD's error.
    Computed in float64, returned in ``weight``'s dtype.
    """
    w = weight.double()
    _, s, qh = full_svd(w)  # shared with lowrank / sltrain / other ranks of the same matrix
    s, q1, q2 = s[:rank], qh[:rank, :rank], qh[:rank, rank:]
    ridge = ridge_strength(weight.dtype) * s[0].clamp_min(torch.finfo(torch.float64).tiny)
    eye = torch.eye(rank, dtype=w.dtype, device=w.device)
    lhs = torch.cat([s[:, None] * q1, ridge * eye])
    rhs = torch.cat([s[:, None] * q2, torch.zeros_like(q2)])
    v = torch.linalg.lstsq(lhs, rhs).solution if q2.shape[1] else q2
    coef = torch.cat([eye, v], dim=1)  # [I | V]
    u = torch.linalg.lstsq(coef.T, w.T).solution.T
    return u.to(weight.dtype), v.to(weight.dtype)


@register_format
class LowRankLightLinear(RankFormat):
    """W = U [I_r | V], U (out, r), V (r, in − r); 1 <= r <= min(in, out); params r(in + out − r)."""

    name = "lowrank_light"

    @classmethod
    def count_params(cls, in_features, out_features, rank):
        return rank * (in_features + out_features - rank)

    def _init_weights(self, dtype=None, device=None):
        r, fk = self.hp["rank"], {"dtype": dtype, "device": device}
        # W = [U | U V]: Var(U) = 1/in; Var(UV) = r · Var(U) · Var(V) = 1/in with Var(V) = 1/r.
        self.U = nn.Parameter(torch.randn(self.out_features, r, **fk) / math.sqrt(self.in_features))
        self.V = nn.Parameter(torch.randn(r, self.in_features - r, **fk) / math.sqrt(r))

    def _forward_torch(self, x2d):
        r = self.hp["rank"]
        return torch.addmm(x2d[:, :r], x2d[:, r:], self.V.T) @ self.U.T

    def dense_weight(self):
        return torch.cat([self.U, self.U @ self.V], dim=1)

    def forward_flops(self, tokens):
        # The two matmuls; the identity part is an addition FlopCounterMode does not count.
        r = self.hp["rank"]
        return 2 * tokens * r * (self.in_features - r + self.out_features)

    @torch.no_grad()
    def _project(self, weight, X=None):
        """With activations X, the calibration-aware rank-r optimum re-expressed as U [I | V]."""
        if X is not None:
            a, b = whitened_svd(weight, self.hp["rank"], X)
            weight = a @ b
        u, v = light_factors(weight, self.hp["rank"])
        self.U.copy_(u)
        self.V.copy_(v)
