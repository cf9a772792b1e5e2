"""Fitting a 2:4 sparse core C between fixed factors: the numerics shared by DSFormer and ARMOR.

Both minimise the quadratic  f(C) = tr((W − A C B) G (W − A C B)ᵀ)  over C with a 2:4 support,
where G is the activations' Gram matrix XᵀX/tokens, its diagonal (ARMOR's Hessian proxy) or I
without calibration data. With P = AᵀA, Q = B G Bᵀ and R = Aᵀ W G Bᵀ,
    f(C) = f(0) − 2⟨C, R⟩ + ⟨C, P C Q⟩,
so a problem is the two products C ↦ P C and C ↦ C Q (dense, block-diagonal or identity) and R.
Two steps, neither of which increases f:
  * ``hard_threshold``: one projected-gradient step (iterative hard thresholding) that may move
    the support: C ← keep_2_of_4(C − ∇f / L), L ≥ 2‖P‖‖Q‖, backtracking if L was underestimated;
  * ``refine``: conjugate gradients on the values with the support fixed (the quadratic restricted
    to the support is convex, so every CG step lowers f).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ._chain import keep_2_of_4

POWER_STEPS = 10  # an underestimate only costs a backtracking step
BACKTRACKS = 6


def largest_eigenvalue(apply: Callable[[torch.Tensor], torch.Tensor], n: int, like: torch.Tensor) -> float:
    """Estimate of the largest eigenvalue of a symmetric PSD operator on vectors of length ``n``."""
    v = torch.ones(n, 1, dtype=like.dtype, device=like.device)
    lam = 0.0
    for _ in range(POWER_STEPS):
        w = apply(v)
        lam = float(w.norm())
        if lam == 0.0:
            return 0.0
        v = w / lam
    return lam


@dataclass
class CoreProblem:
    """f(C) = const − 2⟨C, R⟩ + ⟨C, left(right(C))⟩ with left(C) = P C, right(C) = C Q.

    ``left`` must return a new tensor (a product, never its argument): the solvers update its
    result in place to keep the fit's peak memory down."""

    left: Callable[[torch.Tensor], torch.Tensor]
    right: Callable[[torch.Tensor], torch.Tensor]
    R: torch.Tensor
    const: float

    def loss(self, C: torch.Tensor) -> float:
        return float(self.const - 2 * (C * self.R).sum() + (C * self.left(self.right(C))).sum())

    def _curvature(self, C: torch.Tensor) -> torch.Tensor:
        return self.left(self.right(C))

    def refine(self, C: torch.Tensor, mask: torch.Tensor, steps: int) -> torch.Tensor:
        """C after ``steps`` conjugate-gradient steps on its values (support ``mask`` fixed)."""
        C = C * mask
        r = (self.R - self._curvature(C)) * mask  # −∇f/2 on the support
        p, rs = r.clone(), float((r * r).sum())  # r and p change in place below
        for _ in range(steps):
            if rs <= 1e-30:
                break
            Ap = self._curvature(p).mul_(mask)  # left(...) is a fresh product: safe to update
            curv = float((p * Ap).sum())
            if curv <= 0.0:
                break
            alpha = rs / curv
            # In place (same values as C + αp etc.): fresh n×n copies each step raised the peak.
            C += alpha * p
            r -= alpha * Ap
            del Ap
            rs_new = float((r * r).sum())
            p, rs = p.mul_(rs_new / rs).add_(r), rs_new
        return C

    def hard_threshold(self, C: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(C, mask) after one iterative-hard-thresholding step, or unchanged if none lowers f."""
        m, n = C.shape
        lp = largest_eigenvalue(self.left, m, C)  # left/right take any number of columns/rows
        lq = largest_eigenvalue(lambda v: self.right(v.T).T, n, C)
        if lp * lq == 0.0:
            return C, mask
        step = 1.0 / (lp * lq)
        half_grad = self._curvature(C) - self.R
        before = self.loss(C)
        for _ in range(BACKTRACKS):
            candidate = C - step * half_grad
            new_mask = keep_2_of_4(candidate.abs())
            candidate.mul_(new_mask)  # in place: a second n×n copy would raise the fit's peak
            if self.loss(candidate) <= before:
                return candidate, new_mask
            del candidate
            step /= 2
        return C, mask
