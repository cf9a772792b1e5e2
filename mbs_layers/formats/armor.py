"""ARMOR (2025): Ŵ = A (W′ ⊙ M) B with A (out, out), B (in, in) block-diagonal and M a 2:4 mask.

y = ((x Bᵀ) Cᵀ) Aᵀ with C = W′ ⊙ M: a chain of a ``blockdiag`` stage (B), a ``semi24`` stage
(C) and a ``blockdiag`` stage (A), so it runs on the block-diagonal Triton GEMM around
cuSPARSELt or the Triton 2:4 kernel. ``block`` is the size of A's and B's diagonal blocks
(the paper's 32 by default, and the largest the budget search picks); it must divide in and out,
and 4 must divide in. The layer always stores a little more than half of dense.

Fit (``approximate``), block-coordinate descent on the paper's layer-wise proxy loss
    ℓ(Ŵ) = Σ_ij h_j (W − Ŵ)_ij²,  h = diag(XᵀX)/tokens (the input Hessian's diagonal; 1 without X),
started from A = B = I and C = the 2:4 pruning of W that is optimal for ℓ (the 2 largest h_j W_ij²
of every 4, i.e. magnitude pruning when X is None). One sweep updates, each in closed form or by a
step that cannot raise ℓ, and keeps a step only if ℓ does not increase:
  A (per block, weighted least squares), B (per block, least squares: ℓ is column-separable),
  C's values on the support (conjugate gradients), and the support (one iterative-hard-
  thresholding step). So ℓ never increases and ends ≤ that of 2:4 pruning (the paper's guarantee).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch

from ..base import register_format
from ..validation import check_divides, check_int, divisors
from ._calibration import hessian_diag
from ._chain import ChainLinear, keep_2_of_4, load_2_of_4
from ._core_fit import CoreProblem
from .blockdiag import BlockDiagLinear
from .semi24 import GROUP, KEPT, Semi24Linear

DEFAULT_BLOCK = 32
SWEEPS = 20
CG_STEPS = 5


@register_format
class ArmorLinear(ChainLinear):
    """Ŵ = A (W′ ⊙ M) B; ``block`` divides in and out, 4 ∣ in; params out·in/2 + block·(out + in)."""

    name = "armor"
    hparam_names = ("block",)
    data_aware = True

    @classmethod
    def _check_hparams(cls, in_features, out_features, block=DEFAULT_BLOCK):
        Semi24Linear.check_hparams(in_features, out_features)
        block = check_int("block", block, low=1)
        check_divides("block", block, "in_features", in_features)
        check_divides("block", block, "out_features", out_features)
        return {"block": block}

    @classmethod
    def count_params(cls, in_features, out_features, block):
        return in_features * out_features * KEPT // GROUP + block * (in_features + out_features)

    @classmethod
    def hparam_grid(cls, in_features, out_features):
        Semi24Linear.check_hparams(in_features, out_features)
        # Budgets choose blocks up to the paper's 32: larger wrappers stop being "low-overhead"
        # error correctors (an explicit ``block`` may still be larger).
        return [{"block": b} for b in divisors(math.gcd(in_features, out_features)) if b <= DEFAULT_BLOCK]

    def _build_stages(self, dtype=None, device=None):
        b, fk = self.hp["block"], {"bias": False, "dtype": dtype, "device": device, "backend": "torch"}
        n, m = self.in_features, self.out_features
        stages = [
            BlockDiagLinear(n, n, nblocks=n // b, **fk),
            Semi24Linear(n, m, **fk),
            BlockDiagLinear(m, m, nblocks=m // b, **fk),
        ]
        with torch.no_grad():  # the paper's start: identity wrappers around a 2:4 core
            for wrapper in stages:
                if isinstance(wrapper, BlockDiagLinear):
                    wrapper.blocks.copy_(torch.eye(b).expand_as(wrapper.blocks))
        return stages

    @torch.no_grad()
    def _project(self, weight, X=None):
        h = hessian_diag(X).to(weight.device) if X is not None else None
        fit = fit_armor(weight, self.hp["block"], h)
        self.stage(0, BlockDiagLinear).blocks.copy_(fit.B)
        load_2_of_4(self.stages[1], fit.C, fit.mask)
        self.stage(2, BlockDiagLinear).blocks.copy_(fit.A)


def block_left(blocks: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
    """diag(blocks) @ M for blocks (nb, b, b) and M with nb·b rows."""
    nb, b, _ = blocks.shape
    return (blocks @ M.reshape(nb, b, -1)).reshape(M.shape)


def block_right(M: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
    """M @ diag(blocks) for blocks (nb, b, b) and M with nb·b columns."""
    nb, b, _ = blocks.shape
    return (M.reshape(-1, nb, b).transpose(0, 1) @ blocks).transpose(0, 1).reshape(M.shape)


def proxy_loss(weight: torch.Tensor, approx: torch.Tensor, h: torch.Tensor | None = None) -> float:
    """ARMOR's proxy Σ_ij h_j (W − Ŵ)_ij² (h = 1 without calibration data), in float64."""
    diff2 = (weight.double() - approx.double()).pow(2)
    return float((diff2 * h).sum() if h is not None else diff2.sum())


def _solve_blocks(gram: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """gram⁻¹ rhs per block, with a tiny relative ridge for blocks that lost rank."""
    b = gram.shape[-1]
    ridge = 1e-12 * gram.diagonal(dim1=-2, dim2=-1).sum(-1).clamp_min(1e-300)
    eye = torch.eye(b, dtype=gram.dtype, device=gram.device)
    solved: torch.Tensor = torch.linalg.solve(gram + ridge[:, None, None] * eye, rhs)  # torch.linalg is typed Any
    return solved


@dataclass
class ArmorFit:
    A: torch.Tensor  # (out/b, b, b) blocks
    C: torch.Tensor  # (out, in), zero off the mask
    B: torch.Tensor  # (in/b, b, b) blocks
    mask: torch.Tensor  # (out, in) bool, 2:4
    losses: list[float]  # the proxy loss at the start and after every block-coordinate step


def fit_armor(weight: torch.Tensor, block: int, h: torch.Tensor | None = None, sweeps: int | None = None) -> ArmorFit:
    """The block-coordinate descent of the module docstring (``SWEEPS`` sweeps by default), in float64."""
    sweeps = SWEEPS if sweeps is None else sweeps
    # W in float64 is made where a step needs it (``weight.double()``, exact, so the same values)
    # rather than kept: a lasting copy would sit under the conjugate-gradient peak for nothing.
    m, n = weight.shape
    hv = h.double() if h is not None else torch.ones(n, dtype=torch.float64, device=weight.device)
    eye = torch.eye(block, dtype=torch.float64, device=weight.device)
    A, B = eye.repeat(m // block, 1, 1), eye.repeat(n // block, 1, 1)
    mask = keep_2_of_4(weight.double().pow(2) * hv)

    def loss(A, C, B):
        return proxy_loss(weight, block_left(A, block_right(C, B)), hv)

    fit = ArmorFit(A, weight.double() * mask, B, mask, [])
    fit.losses.append(loss(fit.A, fit.C, fit.B))

    def accept(**new):
        candidate = {"A": fit.A, "C": fit.C, "B": fit.B, **new}
        value = loss(candidate["A"], candidate["C"], candidate["B"])
        if value <= fit.losses[-1]:
            for k, v in new.items():
                setattr(fit, k, v)
            fit.losses.append(value)
            return True
        return False

    root = hv.sqrt()
    for _ in range(sweeps):
        # Each step builds its n×n temporaries inside a helper, so they are freed before the next
        # (keeping them alive across the sweep cost ~4 float64 copies of W at the peak).
        accept(A=_best_A(weight, fit, root, block))
        accept(B=_best_B(weight, fit, block))
        problem = _core_problem(weight, fit, hv, block)
        accept(C=problem.refine(fit.C, fit.mask, CG_STEPS))
        candidate, mask = problem.hard_threshold(fit.C, fit.mask)
        if accept(C=candidate):
            fit.mask = mask
        del problem, candidate, mask
    fit.A, fit.C, fit.B = (t.to(weight.dtype) for t in (fit.A, fit.C, fit.B))
    return fit


def _best_A(weight: torch.Tensor, fit: ArmorFit, root: torch.Tensor, block: int) -> torch.Tensor:
    """Block i minimises ‖(W_i − A_i P_i) diag(√h)‖², P = C B (weighted least squares)."""
    m, n = weight.shape
    Ph = (block_right(fit.C, fit.B) * root).reshape(m // block, block, n)
    Wi = (weight.double() * root).reshape(m // block, block, n)
    return _solve_blocks(Ph @ Ph.transpose(1, 2), Ph @ Wi.transpose(1, 2)).transpose(1, 2)


def _best_B(weight: torch.Tensor, fit: ArmorFit, block: int) -> torch.Tensor:
    """ℓ separates over columns, so block j is the least-squares fit of W_j by (A C)_j B_j."""
    m, n = weight.shape
    Q = block_left(fit.A, fit.C).reshape(m, n // block, block).transpose(0, 1)
    Wj = weight.double().reshape(m, n // block, block).transpose(0, 1)
    return _solve_blocks(Q.transpose(1, 2) @ Q, Q.transpose(1, 2) @ Wj)


def _core_problem(weight: torch.Tensor, fit: ArmorFit, hv: torch.Tensor, block: int) -> CoreProblem:
    """The quadratic in C with P = AᵀA and Q = B diag(h) Bᵀ (both block-diagonal)."""
    W = weight.double()
    At = fit.A.transpose(1, 2)
    P, Qb = At @ fit.A, (fit.B * hv.reshape(-1, 1, block)) @ fit.B.transpose(1, 2)
    return CoreProblem(
        left=partial(block_left, P),
        right=partial(block_right, blocks=Qb),
        R=block_left(At, block_right(W * hv, fit.B.transpose(1, 2))),
        const=float((W.pow(2) * hv).sum()),
    )
