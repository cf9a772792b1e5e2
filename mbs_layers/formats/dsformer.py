"""DSFormer (arXiv, Dec 2023): W ≈ D S, D dense (out, k) and S 2:4 sparse (k, in).

y = (x Sᵀ) Dᵀ: a 2:4 sparse product down to k features, then a small dense one, so the
layer is a chain of a ``semi24`` stage (in → k) and a ``dense`` stage (k → out) and runs on
cuSPARSELt or the Triton 2:4 kernel followed by cuBLAS. ``rank`` is the inner width k.

Fit (``approximate``): the paper learns D and S jointly on the task loss with its
Straight-Through Factorizer; without a task, this library fits the layer-wise objective
f = tr((W − DS) G (W − DS)ᵀ) (G = XᵀX/tokens from calibration activations X, else I), from the
truncated SVD (of W Lᵀ when X is given) with S projected to 2:4, by alternating
  * D ← argmin_D f (least squares, closed form),
  * S ← one iterative-hard-thresholding step (gradient step, then the 2 largest of every 4
    kept: the magnitude-2:4-projected update, which may move the support), then conjugate
    gradients on S's values on that support;
each step is accepted only if it lowers f, so f never increases.
"""

from __future__ import annotations

import torch

from ..base import register_format
from ..validation import check_int
from ._calibration import whitening
from ._chain import ChainLinear, keep_2_of_4, load_2_of_4
from ._core_fit import CoreProblem
from .dense import DenseLinear
from .lowrank import rank_grid
from .semi24 import GROUP, KEPT, Semi24Linear

ITERATIONS = 30
SPARSE_MULTIPLE = 16  # cuSPARSELt's row multiple for the 2:4 operand (kernels/semi24.py)
CG_STEPS = 5


@register_format
class DSFormerLinear(ChainLinear):
    """W = D S, D (out, rank) dense, S (rank, in) 2:4; 4 ∣ in; params rank·(out + in/2)."""

    name = "dsformer"
    hparam_names = ("rank",)
    data_aware = True
    recovers_own_format = False

    @classmethod
    def _check_hparams(cls, in_features, out_features, rank=None):
        Semi24Linear.check_hparams(in_features, 1)
        if rank is None:
            raise ValueError("rank is required for dsformer: allowed 1 <= rank <= min(in, out)")
        return {"rank": check_int("rank", rank, low=1, high=min(in_features, out_features))}

    @classmethod
    def count_params(cls, in_features, out_features, rank):
        return rank * out_features + rank * in_features * KEPT // GROUP

    @classmethod
    def hparam_grid(cls, in_features, out_features):
        # Budgets choose ranks that cuSPARSELt can run (the 2:4 stage's k rows in multiples of
        # 16), every rank below 16; an explicit ``rank`` may be anything.
        cls._check_hparams(in_features, out_features, rank=1)
        return [
            {"rank": r}
            for r in rank_grid(min(in_features, out_features))
            if r < SPARSE_MULTIPLE or r % SPARSE_MULTIPLE == 0
        ]

    def _build_stages(self, dtype=None, device=None):
        k, fk = self.hp["rank"], {"bias": False, "dtype": dtype, "device": device, "backend": "torch"}
        # S's dense weight has variance 1/in, D's 1/k: the product has nn.Linear's 1/in.
        return [Semi24Linear(self.in_features, k, **fk), DenseLinear(k, self.out_features, **fk)]

    @torch.no_grad()
    def _project(self, weight, X=None):
        D, S, mask, _ = fit_dsformer(weight, self.hp["rank"], X)
        load_2_of_4(self.stages[0], S, mask)
        self.stage(1, DenseLinear).weight.copy_(D)


def fit_dsformer(weight: torch.Tensor, rank: int, X: torch.Tensor | None = None, iterations: int = ITERATIONS):
    """(D, S, mask of S, losses): the alternating fit described in the module docstring, float64.

    ``losses`` holds f after the initialisation and after every accepted step (non-increasing).
    """
    W = weight.double()
    L = whitening(X).to(W.device) if X is not None else None
    G = L.T @ L if L is not None else None
    right = (lambda C: C @ G) if G is not None else (lambda C: C)
    WG = right(W)
    const = float((W * WG).sum())

    def loss(D, S):
        E = W - D @ S
        return float((E * right(E)).sum())

    target = W @ L.T if L is not None else W
    u, s, vh = torch.linalg.svd(target, full_matrices=False)
    root = s[:rank].sqrt()
    D, S = u[:, :rank] * root, root[:, None] * vh[:rank]
    if L is not None:  # S Lᵀ = Σ½Vᵀ  ⇒  S = Σ½Vᵀ L⁻ᵀ
        S = torch.linalg.solve_triangular(L, S.T, upper=True, left=True).T
    mask = keep_2_of_4(S.abs())
    S = S * mask
    losses = [loss(D, S)]
    for _ in range(iterations):
        SG = right(S)
        gram = S @ SG.T
        ridge = 1e-12 * float(gram.diagonal().sum()) + 1e-300
        D_new = torch.linalg.solve(gram + ridge * torch.eye(rank, dtype=W.dtype, device=W.device), SG @ W.T).T
        new_loss = loss(D_new, S)
        if new_loss <= losses[-1]:
            D = D_new
            losses.append(new_loss)
        P = D.T @ D
        problem = CoreProblem(left=P.matmul, right=right, R=D.T @ WG, const=const)
        S, mask = problem.hard_threshold(S, mask)
        S = problem.refine(S, mask, CG_STEPS)
        losses.append(problem.loss(S))
    return D.to(weight.dtype), S.to(weight.dtype), mask, losses
