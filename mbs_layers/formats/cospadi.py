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
orientation). Each of ``ITERATIONS`` rounds codes every column by Batch-OMP (all columns at once,
progressive Cholesky of the chosen atoms' Gram block, correlations as weighted sums of Gram rows;
atoms are picked in float32, then the codes are refit in float64 by one batched Cholesky solve),
then updates every atom and its coefficients by a rank-1 fit of the residual restricted to the
columns that use it (alternating least squares started at the current atom, which never raises
the error); unused atoms are replaced by the worst-coded column. The best round is kept.
Before Batch-OMP's Cholesky updates each OMP step solved a t×t system per column and formed the
k×N Gram product; on MiniLM's 1536×384 ``intermediate.dense`` at half of dense (k = 384, s = 96)
that made a fit take minutes (docs/formats.md has the measured speed-up).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..base import StructuredLinear, register_format
from ..validation import check_int
from ._calibration import whitening
from .lowrank import rank_grid

ITERATIONS = 10
RANK1_STEPS = 2
CODE_RATIO = 4  # default sparsity: atoms // CODE_RATIO (at least 1)
INDEX_BYTES = 4  # code_index is stored as int32
PURSUIT_DTYPE = torch.float32  # the dtype OMP picks atoms in (see ksvd_round)
DEPENDENT = 1e-10  # OMP: floor of d² = G_ii − ‖L⁻¹G_I,i‖² (a unit atom in the chosen ones' span)


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
    with ``s`` atoms of D (unit columns), all columns at once (Batch-OMP, Rubinstein, Zibulevsky,
    Elad 2008): only the Gram matrix G = DᵀD and the correlations DᵀY are used.

    Per column and step t the chosen atoms' Gram block G_II = L Lᵀ grows by one row, so L⁻¹ gains
    one row (−wᵀL⁻¹/d, 1/d) with w = L⁻¹ G_I,i, d² = G_ii − ‖w‖², and the least-squares
    coefficients G_II⁻¹ DᵢᵀY gain (c_i / d) times that row, c_i the new atom's correlation with the
    residual. The residual's correlations DᵀY − G_I γ are a weighted sum of t rows of G (an
    ``embedding_bag``): O(N·(t² + t·k)) per step instead of a t×t solve per column plus k²N.
    """
    k, N = D.shape[1], Y.shape[1]
    gram = D.T @ D
    alpha = Y.T @ D  # (N, k)
    diag = gram.diagonal()
    rows = torch.arange(N, device=D.device)
    index = torch.zeros(N, s, dtype=torch.long, device=D.device)
    linv = torch.zeros(N, s, s, dtype=D.dtype, device=D.device)  # L⁻¹ of the chosen atoms' Gram block
    coef = torch.zeros(N, s, dtype=D.dtype, device=D.device)
    picked = torch.zeros(N, k, dtype=torch.bool, device=D.device)
    corr = alpha
    floor = max(DEPENDENT, 64 * torch.finfo(D.dtype).eps)
    for t in range(s):
        i = corr.abs().masked_fill_(picked, -1.0).argmax(1)  # never pick an atom twice
        picked[rows, i] = True
        index[:, t] = i
        if t == 0:
            d2 = diag[i]
        else:
            block = linv[:, :t, :t]  # products as multiply-and-sum: faster than bmm on N tiny blocks
            w = (block * gram[index[:, :t], i[:, None]][:, None, :]).sum(2)
            d2 = diag[i] - w.pow(2).sum(1)
            linv[:, t, :t] = (block * w[:, :, None]).sum(1)
        d = d2.clamp_min(floor).sqrt()  # an atom in the span of the chosen ones gets ~0
        linv[:, t, : t + 1] /= -d[:, None]
        linv[:, t, t] = 1 / d
        coef[:, : t + 1] += (corr[rows, i] / d)[:, None] * linv[:, t, : t + 1]
        if t + 1 < s:
            corr = alpha - F.embedding_bag(index[:, : t + 1], gram, per_sample_weights=coef[:, : t + 1], mode="sum")
    return index.T, coef.T


def refit_codes(D: torch.Tensor, Y: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """coef (s, N): the least-squares codes of Y's columns on the atoms ``index`` (s, N) picked,
    by a batched Cholesky solve of the normal equations (a 1e-10 ridge for dependent atoms)."""
    gram = D.T @ D
    cols = torch.arange(Y.shape[1], device=Y.device)
    sub = gram[index.T[:, :, None], index.T[:, None, :]]  # (N, s, s)
    sub.diagonal(dim1=1, dim2=2).add_(DEPENDENT)
    rhs = (D.T @ Y)[index, cols.expand_as(index)].T[:, :, None]
    chol, info = torch.linalg.cholesky_ex(sub)
    coef = torch.cholesky_solve(rhs, chol)
    bad = info.nonzero().squeeze(1)
    if bad.numel():  # not positive definite in floating point: LU instead
        coef[bad] = torch.linalg.solve(sub[bad], rhs[bad])
    return coef[:, :, 0].T


def ksvd_round(D, Y, s):
    """One K-SVD round: OMP codes, then every atom and its coefficients updated in turn.

    The residual is kept as rows (column n of Y − D S is row n), so an atom's users are a
    contiguous row gather; its rank-1 fit works on E = R_U + x₀d₀ᵀ without forming E.
    """
    # atoms are picked in float32 (the fast paths of embedding_bag and bmm), codes refit in float64
    index = omp(D.to(PURSUIT_DTYPE), Y.to(PURSUIT_DTYPE), s)[0]
    coef = refit_codes(D, Y, index)
    k, N = D.shape[1], Y.shape[1]
    cols = torch.arange(N, device=Y.device).expand_as(index)
    S = torch.zeros(k, N, dtype=Y.dtype, device=Y.device)
    S[index, cols] = coef
    residual = (Y - D @ S).T.contiguous()  # (N, in)
    key = (index * N + cols).reshape(-1).sort().values  # supports by atom, then column
    users_of = (key % N).split(torch.bincount(index.reshape(-1), minlength=k).tolist())
    for j, users in enumerate(users_of):
        if users.numel() == 0:  # replace an unused atom by the worst-coded column
            worst = residual.norm(dim=1).argmax()
            D[:, j] = residual[worst] / residual[worst].norm().clamp_min(1e-300)
            continue
        r_u, d0, x0 = residual.index_select(0, users), D[:, j].clone(), S[j, users]
        d = d0
        for _ in range(RANK1_STEPS):  # ALS on the rank-1 fit of E, from the current atom
            x = r_u @ d + x0 * (d0 @ d)
            d = r_u.T @ x + d0 * (x0 @ x)
            d = d / d.norm().clamp_min(1e-300)
        x = r_u @ d + x0 * (d0 @ d)
        D[:, j], S[j, users] = d, x
        residual.index_copy_(0, users, r_u.addr_(x0, d0).addr_(x, d, alpha=-1))
    return D, S, residual


def fit_cospadi(
    weight: torch.Tensor, atoms: int, sparsity: int, X: torch.Tensor | None = None, iterations: int = ITERATIONS
):
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
