"""CoSpaDi (2025): W ≈ D S with a dense dictionary D and a column-sparse code matrix S.

In the paper's orientation (y = x W, W of shape (in, out)) W ≈ D S with D (in, k) holding k
atoms and S (k, out) keeping ``sparsity`` s non-zeros per column: every output neuron's weight
vector is a combination of s atoms, so the columns of W lie in a union of s-dimensional
subspaces instead of one shared k-dimensional one (low-rank). Stored here as the (k, in)
``dictionary`` (rows are atoms), the (out, s) ``codes`` and their (out, s) int32 ``code_index``;
the applied (out, in) matrix is Sᵀ Dᵀ. Forward: z = x @ dictionaryᵀ (a dense GEMM to k
features), then y[:, o] = Σ_j z[:, code_index[o, j]] · codes[o, j] (a gather; the Triton kernel of
``kernels/cospadi.py`` on GPU).

Fit (``approximate``): K-SVD (Aharon, Elad, Bruckstein 2006) on the columns of W, guided by
calibration activations X as in the paper: with LᵀL = XᵀX/tokens (+ a tiny ridge),
‖X (W − Ŵ)ᵀ‖² = tokens·‖L (Wᵀ − D S)‖², so K-SVD runs on L Wᵀ with dictionary L D and D is
recovered by a triangular solve (atoms must live in input space for this to be exact, hence the
orientation). Each of ``ITERATIONS`` rounds codes every column by batched orthogonal matching
pursuit, then updates every atom and its coefficients by a rank-1 fit of the residual restricted
to the columns that use it (alternating least squares started at the current atom, which never
raises the error); unused atoms are replaced by the worst-coded column. The best round is kept.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..base import StructuredLinear, register_format
from ..validation import check_int
from ._calibration import whitening
from .lowrank import rank_grid

ITERATIONS = 10
RANK1_STEPS = 2
CODE_RATIO = 4      # default sparsity: atoms // CODE_RATIO (at least 1)
INDEX_BYTES = 4     # code_index is stored as int32


def default_sparsity(atoms: int) -> int:
    return max(1, atoms // CODE_RATIO)


@register_format
class CoSpaDiLinear(StructuredLinear):
    """Ŵᵀ = D S, ``atoms`` k ≤ out atoms of length in, ``sparsity`` s ≤ k per column; params k·in + s·out."""

    name = "cospadi"
    code_index: torch.Tensor  # a buffer, typed for the checker
    hparam_names = ("atoms", "sparsity")
    data_aware = True
    recovers_own_format = False
    exact_projection = False

    @classmethod
    def _check_hparams(cls, in_features, out_features, atoms=None, sparsity=None):
        if atoms is None:
            raise ValueError("atoms is required for cospadi: allowed 1 <= atoms <= out_features")
        atoms = check_int("atoms", atoms, low=1, high=out_features)
        sparsity = default_sparsity(atoms) if sparsity is None else check_int("sparsity", sparsity, low=1, high=atoms)
        return {"atoms": atoms, "sparsity": sparsity}

    @classmethod
    def count_params(cls, in_features, out_features, atoms, sparsity):
        return atoms * in_features + sparsity * out_features

    @classmethod
    def hparam_grid(cls, in_features, out_features):
        return [{"atoms": k, "sparsity": default_sparsity(k)} for k in rank_grid(out_features)]

    def _init_weights(self, dtype=None, device=None):
        k, s = self.hp["atoms"], self.hp["sparsity"]
        fk = {"dtype": dtype, "device": device}
        # Var(Ŵ_ij) = s · Var(code) · Var(atom) = s · (1/s) · (1/in) = 1/in.
        self.dictionary = nn.Parameter(torch.randn(k, self.in_features, **fk) / math.sqrt(self.in_features))
        self.codes = nn.Parameter(torch.randn(self.out_features, s, **fk) / math.sqrt(s))
        index = torch.rand(self.out_features, k, device=device).topk(s, dim=1).indices.sort(dim=1).values
        self.register_buffer("code_index", index.to(torch.int32))

    def _forward_torch(self, x2d):
        z = x2d @ self.dictionary.T
        return (z[:, self.code_index.long()] * self.codes).sum(-1)

    def code_matrix(self) -> torch.Tensor:
        """Sᵀ as a dense (out, atoms) matrix."""
        s_t = self.codes.new_zeros(self.out_features, self.hp["atoms"])
        return s_t.scatter_add(1, self.code_index.long(), self.codes)

    def dense_weight(self):
        return self.code_matrix() @ self.dictionary

    def forward_flops(self, tokens):
        return 2 * tokens * (self.hp["atoms"] * self.in_features + self.hp["sparsity"] * self.out_features)

    def flops_unseen_by_torch(self, tokens):
        return 2 * tokens * self.hp["sparsity"] * self.out_features  # the gather-multiply-sum

    def storage_bytes(self):
        return self.param_count() * self.weight_dtype.itemsize + self.codes.numel() * INDEX_BYTES

    @torch.no_grad()
    def _project(self, weight, X=None):
        D, index, codes, _ = fit_cospadi(weight, self.hp["atoms"], self.hp["sparsity"], X)
        self.dictionary.copy_(D.T)
        self.code_index.copy_(index.T)
        self.codes.copy_(codes.T)


def omp(D: torch.Tensor, Y: torch.Tensor, s: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched orthogonal matching pursuit: (index (s, N), coef (s, N)) coding every column of Y
    with ``s`` atoms of D (unit columns), from the Gram matrix (Rubinstein et al.'s Batch-OMP)."""
    k, N = D.shape[1], Y.shape[1]
    gram, alpha = D.T @ D, D.T @ Y
    ridge = 1e-10 * torch.eye(s, dtype=D.dtype, device=D.device)
    cols = torch.arange(N, device=D.device)
    index = torch.empty(0, N, dtype=torch.long, device=D.device)
    S = torch.zeros(k, N, dtype=D.dtype, device=D.device)
    coef = S[:0]
    for t in range(1, s + 1):
        corr = (alpha - gram @ S).abs()
        corr[index, cols.expand_as(index)] = -1.0  # never pick an atom twice
        index = torch.cat((index, corr.argmax(0, keepdim=True)))
        sub = gram[index.T[:, :, None], index.T[:, None, :]]  # (N, t, t)
        rhs = alpha[index, cols.expand_as(index)].T[:, :, None]
        coef = torch.linalg.solve(sub + ridge[:t, :t], rhs)[:, :, 0].T
        S = torch.zeros_like(S).index_put_((index, cols.expand_as(index)), coef, accumulate=True)
    return index, coef


def ksvd_round(D, Y, s):
    """One K-SVD round: OMP codes, then every atom and its coefficients updated in turn."""
    index, coef = omp(D, Y, s)
    N, cols = Y.shape[1], torch.arange(Y.shape[1], device=Y.device)
    S = torch.zeros(D.shape[1], N, dtype=Y.dtype, device=Y.device)
    S[index, cols.expand_as(index)] = coef
    residual = Y - D @ S
    for j in range(D.shape[1]):
        users = S[j].nonzero().squeeze(1)
        if users.numel() == 0:  # replace an unused atom by the worst-coded column
            worst = residual.norm(dim=0).argmax()
            D[:, j] = residual[:, worst] / residual[:, worst].norm().clamp_min(1e-300)
            continue
        E = residual[:, users] + D[:, j:j + 1] * S[j, users]
        d, x = D[:, j], S[j, users]
        for _ in range(RANK1_STEPS):  # ALS on the rank-1 fit of E, from the current atom
            x = d @ E
            d = E @ x
            d = d / d.norm().clamp_min(1e-300)
        x = d @ E
        D[:, j], S[j, users] = d, x
        residual[:, users] = E - d[:, None] * x
    return D, S, residual


def fit_cospadi(weight: torch.Tensor, atoms: int, sparsity: int, X: torch.Tensor | None = None,
                iterations: int = ITERATIONS):
    """(D (in, k), index (s, out), codes (s, out), errors): K-SVD as in the module docstring.

    ``errors`` holds ‖L(Wᵀ − D S)‖² (L = I without X) after every round; the best round is returned.
    """
    Y = weight.double().T  # (in, out): a column per output neuron
    L = whitening(X).to(Y.device) if X is not None else None
    if L is not None:
        Y = L @ Y
    start = torch.randperm(Y.shape[1], device=Y.device)[:atoms]
    D = Y[:, start] / Y[:, start].norm(dim=0).clamp_min(1e-300)
    best: tuple[float, torch.Tensor, torch.Tensor] | None = None
    errors: list[float] = []
    for _ in range(iterations):
        D, S, residual = ksvd_round(D, Y, sparsity)
        errors.append(float(residual.pow(2).sum()))
        if best is None or errors[-1] < best[0]:
            best = (errors[-1], D.clone(), S.clone())
    if best is None:
        raise ValueError(f"iterations={iterations} is out of range: allowed iterations >= 1")
    _, D, S = best
    if L is not None:
        D = torch.linalg.solve_triangular(L, D, upper=True)
    # s entries per column; a column may use fewer atoms when OMP's later picks got 0.
    index = S.abs().topk(sparsity, dim=0).indices.sort(dim=0).values
    codes = S.gather(0, index)
    return D.to(weight.dtype), index.to(torch.int32), codes.to(weight.dtype), errors
