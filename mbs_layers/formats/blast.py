"""BLAST (Lee et al. 2024): a b×b grid of blocks W_ij = U_i diag(s_ij) V_jᵀ sharing bases per row/column.

U is (b, p, r) with p = out/b, V is (b, q, r) with q = in/b and s is (b, b, r). The forward
computes z_j = x_j V_j, mixes w_i = Σ_j s_ij ⊙ z_j and maps back y_i = w_i U_iᵀ, costing
2·tokens·r·(in + out + b²) FLOPs. Projection is the paper's preconditioned gradient descent.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..base import StructuredLinear, register_format
from ..validation import check_divides, check_int, divisors
from .lowrank import rank_grid

PROJECTION_STEPS = 30  # most sweeps of (U, V, s) updates in ``blast_factorize``
PROJECTION_SEED = 0  # seeds the random completion of the initial bases


def blast_mix(z: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """w[t, i] = Σ_j s[i, j] ⊙ z[t, j] for z (tokens, b, r), s (b, b, r)."""
    return torch.einsum("tjr,ijr->tir", z, s)


def _preconditioned_step(gram, rhs, prev, damping):
    """One preconditioned gradient step of unit size for min_X ‖A − X Bᵀ‖², batched.

    With ``gram`` = BᵀB (.., r, r), ``rhs`` = A B and ``prev`` = X (.., k, r), the step
    X − ∇ (BᵀB + δI)⁻¹ equals (rhs + δ·prev)(gram + δI)⁻¹, i.e. the proximal least-squares update
    argmin ‖A − X'Bᵀ‖² + δ‖X' − X‖², which never increases the loss. δ = ``damping``·mean(diag gram),
    floored at 1e-12 of the batch's largest so an all-zero Gram (a zero block row) stays solvable.
    """
    scale = gram.diagonal(dim1=-2, dim2=-1).mean(-1)
    top = scale.max()
    scale = torch.clamp(scale, min=1e-12 * top) if top > 0 else torch.ones_like(scale)
    delta = damping * scale[..., None, None]
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    chol = torch.linalg.cholesky(gram + delta * eye)  # SPD: Cholesky is faster than an LU solve
    return torch.cholesky_solve((rhs + delta * prev).transpose(-1, -2), chol).transpose(-1, -2)


def _block_bases(blocks: torch.Tensor, rank: int) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """Orthonormal top-r singular bases (with singular values) of each block row and block column.

    Every block row of a BLAST matrix is U_i times something and every block column something
    times V_jᵀ, so for a BLAST input these subspaces are exact. Computed from eigen-decompositions
    of the small (p×p, q×q) Gram matrices, far cheaper than SVDs of the wide block rows.
    """
    b, p, _, q = blocks.shape
    bases = []
    for gram in (torch.einsum("ipjq,isjq->ips", blocks, blocks), torch.einsum("ipjq,ipjs->jqs", blocks, blocks)):
        evals, evecs = torch.linalg.eigh(gram)  # ascending
        k = min(rank, gram.shape[-1])
        bases.append((evecs[..., -k:].flip(-1), evals[..., -k:].flip(-1).clamp_min(0).sqrt()))
    return bases[0], bases[1]


def _subspace_start(blocks, bases, rank, gen):
    """U_i, V_j = block-row/column singular bases scaled by √σ, ranks beyond a block padded with noise."""
    b, p, _, q = blocks.shape
    starts = []
    for (basis, sv), size in zip(bases, (p, q)):
        start = 1e-3 * torch.randn(b, size, rank, generator=gen, dtype=blocks.dtype).to(blocks.device)
        start[..., : basis.shape[-1]] += basis * sv[:, None].sqrt()
        starts.append(start)
    return starts


def _greedy_matching(score: torch.Tensor) -> torch.Tensor:
    """perm with score[k, perm[k]] large: repeatedly pair the best remaining (row, column).

    Exact for the noiseless case (the true pairs score b, every other pair less), and needs no
    assignment solver.
    """
    score = score.clone()
    perm = torch.empty(score.shape[0], dtype=torch.long, device=score.device)
    for _ in range(score.shape[0]):
        k, col = divmod(int(score.argmax()), score.shape[1])
        perm[k] = col
        score[k, :] = -1.0
        score[:, col] = -1.0
    return perm


def _aligned_start(blocks, bases, gen):
    """U_i, V_j exact for a BLAST input (b >= 2, r <= p, q) by simultaneous diagonalisation.

    In the bases Ũ_i, Ṽ_j of :func:`_block_bases`, C_ij = Ũ_iᵀA_ijṼ_j = R_i D_ij Q_jᵀ with unknown
    R_i, Q_j (r×r) and diagonal D_ij, so M_i = Σ_jj' a_j b_j' C_ij C_kj⁻¹ C_kj' C_ij'⁻¹ (k = i+1,
    random a, b) equals R_i Λ R_i⁻¹ (Jennrich's trick): its eigenvectors give R_i's columns. Their
    order differs per i; rows of R_i⁻¹C_ij are ∝ Q_j's columns, which matches them across i.
    """
    (ut, _), (vt, _) = bases
    b = blocks.shape[0]
    C = torch.einsum("ipr,ipjq,jqs->ijrs", ut, blocks, vt)
    C_inv = torch.linalg.pinv(C)
    a, c = torch.randn(2, b, generator=gen, dtype=C.dtype).to(C.device)
    nxt = torch.roll(torch.arange(b, device=C.device), -1)
    M = torch.einsum("j,ijrs,ijst->irt", a, C, C_inv[nxt]) @ torch.einsum("j,ijrs,ijst->irt", c, C[nxt], C_inv)
    R = torch.linalg.eig(M)[1].real
    E = torch.linalg.pinv(R)[:, None] @ C  # row k of E[i, j] ∝ column pi_i(k) of Q_j
    dirs = torch.nn.functional.normalize(E, dim=-1)
    for i in range(1, b):
        score = torch.einsum("jks,jls->jkl", dirs[0], dirs[i]).abs().sum(0)
        perm = _greedy_matching(score)
        R[i], E[i] = R[i][:, perm], E[i][:, perm]
    Q = torch.linalg.svd(E.permute(1, 2, 0, 3), full_matrices=False)[2][..., 0, :]  # (b, r, r): rows q_jk
    return ut @ R, vt @ Q.transpose(-1, -2)


def _refit_s(blocks, U, V, damping):
    """Every s_ij by ridge least squares: Gram (U_iᵀU_i)∘(V_jᵀV_j), rhs diag(U_iᵀA_ijV_j).

    This is the preconditioned step taken from s = 0 rather than from the current s: the ridge
    keeps s small in directions the bases cannot resolve (r > block size), which converged
    markedly faster than the proximal step in our tests (e.g. 0.49 vs 0.67 relative error on a
    256² Gaussian matrix with b = 16, r = 40, 30 sweeps).
    """
    gram_u, gram_v = torch.einsum("ipr,ips->irs", U, U), torch.einsum("jqr,jqs->jrs", V, V)
    rhs = torch.einsum("ipr,ipjq,jqr->ijr", U, blocks, V)
    # one block row at a time: the b²·r² Gram entries of all pairs need not exist at once
    return torch.stack(
        [_preconditioned_step(gram_u[i] * gram_v, rhs[i, :, None], 0.0, damping)[:, 0] for i in range(len(U))]
    )


def blast_factorize(
    weight: torch.Tensor,
    nblocks: int,
    rank: int,
    *,
    steps: int = PROJECTION_STEPS,
    seed: int = PROJECTION_SEED,
    delta0: float = 1e-4,
    exact: float = 1e-20,
):
    """(U, V, s) approximating ``weight`` in BLAST form, by preconditioned gradient descent.

    Lee et al. 2024, Alg. 1: each factor takes a gradient step right-multiplied by the inverse of
    its regularised Gram matrix — for U_i, P = (V̄_iᵀV̄_i + δI)⁻¹ with V̄_i = [V_j diag(s_ij)]_j; for
    V_j symmetrically; for s_ij, P = ((U_iᵀU_i)∘(V_jᵀV_j) + δI)⁻¹ — sweeping U, V, s in turn. With
    step size 1 the U and V steps are proximal least-squares updates (see
    :func:`_preconditioned_step`) and s is refit by ridge least squares (:func:`_refit_s`);
    δ = δ0·sqrt(relative loss)·mean(diag Gram) vanishes as the fit becomes exact. Each
    sweep also tries the extrapolated point start + sweep^(1/3)·(end − start) and keeps it when
    better (Bro's line search, which shortens the slow "swamps" of alternating updates).

    Start: the better (after fitting s) of :func:`_aligned_start` (exact for BLAST inputs) and
    :func:`_subspace_start`. Runs ``steps`` sweeps in float64 (fewer only once the relative
    squared error is below ``exact``, i.e. the input was already BLAST); deterministic for a
    given ``seed``.
    """
    m, n = weight.shape
    b = nblocks
    A = weight.double().reshape(b, m // b, b, n // b)  # A[i, :, j, :] = A_ij
    norm2 = A.square().sum()
    if norm2 == 0:  # the zero matrix is BLAST with s = 0 (and would make every Gram singular)
        return tuple(
            torch.zeros(*shape, rank, dtype=A.dtype, device=A.device) for shape in ((b, m // b), (b, n // b), (b, b))
        )
    gen = torch.Generator().manual_seed(seed)

    def rel_loss(U, V, s):
        return (A - torch.einsum("ipr,ijr,jqr->ipjq", U, s, V)).square().sum() / norm2

    def with_s(U, V):  # least-squares s for a start
        return U, V, _refit_s(A, U, V, 1e-12)

    bases = _block_bases(A, rank)
    starts = [with_s(*_subspace_start(A, bases, rank, gen))]
    if b > 1 and rank <= min(m, n) // b:
        starts.append(with_s(*_aligned_start(A, bases, gen)))
    U, V, s = min(starts, key=lambda f: rel_loss(*f))

    loss = rel_loss(U, V, s)
    for step in range(1, steps + 1):
        start = (U, V, s)
        damping = delta0 * loss.sqrt() + 1e-12
        gram_v = torch.einsum("jrs,ijr,ijs->irs", V.transpose(1, 2) @ V, s, s)  # V̄_iᵀV̄_i
        U = _preconditioned_step(gram_v, torch.einsum("ipjq,jqr,ijr->ipr", A, V, s), U, damping)
        gram_u = torch.einsum("irs,ijr,ijs->jrs", U.transpose(1, 2) @ U, s, s)  # Ū_jᵀŪ_j
        V = _preconditioned_step(gram_u, torch.einsum("ipjq,ipr,ijr->jqr", A, U, s), V, damping)
        s = _refit_s(A, U, V, damping)
        jump = step ** (1 / 3)
        bold = tuple(old + jump * (new - old) for old, new in zip(start, (U, V, s)))
        loss, bold_loss = rel_loss(U, V, s), rel_loss(*bold)
        if bold_loss < loss:
            (U, V, s), loss = bold, bold_loss
        if loss <= exact:
            break
    return U, V, s


@register_format
class BlastLinear(StructuredLinear):
    """BLAST with ``nblocks`` b (dividing in and out) and ``rank`` r (1..min(in, out)).

    params = r·(in + out) + b²·r. Projection is iterative (``exact_projection`` False): a fixed
    ``PROJECTION_STEPS`` sweeps of preconditioned gradient descent from a seeded start.
    """

    name = "blast"
    hparam_names = ("nblocks", "rank")
    exact_projection = False

    @classmethod
    def _check_hparams(cls, in_features, out_features, nblocks=None, rank=None):
        common = divisors(math.gcd(in_features, out_features))
        if nblocks is None:
            raise ValueError(f"nblocks is required for blast: allowed nblocks in {common}")
        nblocks = check_int("nblocks", nblocks, low=1)
        check_divides("nblocks", nblocks, "in_features", in_features)
        check_divides("nblocks", nblocks, "out_features", out_features)
        limit = min(in_features, out_features)
        if rank is None:
            raise ValueError(f"rank is required for blast: allowed 1 <= rank <= {limit}")
        return {"nblocks": nblocks, "rank": check_int("rank", rank, low=1, high=limit)}

    @classmethod
    def count_params(cls, in_features, out_features, nblocks, rank):
        return rank * (in_features + out_features + nblocks * nblocks)

    @classmethod
    def hparam_grid(cls, in_features, out_features):
        # r up to the block size (the paper's regime; larger r is valid but only adds redundant
        # rank-one terms per block and makes projection slow), which still spans ~1%..100%+ via small b.
        return [
            {"nblocks": b, "rank": r}
            for b in divisors(math.gcd(in_features, out_features))
            for r in rank_grid(min(in_features, out_features) // b)
        ]

    def _init_weights(self, dtype=None, device=None):
        b, r, fk = self.hp["nblocks"], self.hp["rank"], {"dtype": dtype, "device": device}
        # Var(W) = r · Var(U) · Var(s) · Var(V) = 1/in with Var(U) = 1/r, Var(s) = 1, Var(V) = 1/in.
        self.U = nn.Parameter(torch.randn(b, self.out_features // b, r, **fk) / math.sqrt(r))
        self.V = nn.Parameter(torch.randn(b, self.in_features // b, r, **fk) / math.sqrt(self.in_features))
        self.s = nn.Parameter(torch.randn(b, b, r, **fk))

    def _forward_torch(self, x2d):
        """Three bmm: x's column blocks with V, the diagonal mixing batched over the rank, then U
        (the einsum form's permutes cost ~2x on CPU, bench/reference_vs_bmm.py)."""
        b = self.hp["nblocks"]
        z = torch.bmm(x2d.reshape(-1, b, self.in_features // b).transpose(0, 1), self.V)  # (b_j, T, r)
        w = torch.bmm(z.permute(2, 1, 0), self.s.permute(2, 1, 0))  # (r, T, b_i) = Σ_j z_j s_ij
        y = torch.bmm(w.permute(2, 1, 0), self.U.transpose(1, 2))  # (b_i, T, m/b)
        return y.transpose(0, 1).reshape(-1, self.out_features)

    def dense_weight(self):
        return torch.einsum("ipr,ijr,jqr->ipjq", self.U, self.s, self.V).reshape(self.out_features, self.in_features)

    def forward_flops(self, tokens):
        return 2 * tokens * self.hp["rank"] * (self.in_features + self.out_features + self.hp["nblocks"] ** 2)

    @torch.no_grad()
    def _project(self, weight):
        for param, fitted in zip((self.U, self.V, self.s), blast_factorize(weight, **self.hp)):
            param.copy_(fitted)
