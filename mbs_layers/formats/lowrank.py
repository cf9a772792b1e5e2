"""Low-Rank: W = U V with U (out, r), V (r, in); projection is the truncated SVD (optimal)."""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict

import torch
from torch import nn

from ..base import StructuredLinear, register_format
from ..validation import check_int
from ._calibration import whitening


def rank_grid(limit: int) -> list[int]:
    """Every rank 1..limit: the budget search must find the largest setting that fits, and
    counting a rank's parameters is a formula, so listing them all is cheap."""
    return list(range(1, limit + 1))


def geometric_grid(limit: int) -> list[int]:
    """1..16, then steps of 12.5% up to ``limit``: candidate counts where listing every value
    (nnz of an unstructured or block-sparse layer) would be too many."""
    values = set(range(1, min(limit, 16) + 1))
    v = 16.0
    while v < limit:
        v *= 1.125
        values.add(min(limit, int(v)))
    values.add(limit)
    return sorted(values)


def check_rank(format_name: str, in_features: int, out_features: int, rank) -> int:
    """``rank`` is required and must lie in 1..min(in, out) (shared by the low-rank family)."""
    if rank is None:
        raise ValueError(f"rank is required for {format_name}: allowed 1 <= rank <= min(in, out)")
    return check_int("rank", rank, low=1, high=min(in_features, out_features))


# Lanczos (ARPACK) beats a full SVD when the rank is at most this fraction of min(m, n).
LANCZOS_MAX_FRACTION = 1 / 8


# SVDs kept for reuse: the projection experiment fits one matrix at several ranks (budgets) and
# formats (lowrank, lowrank_light, sltrain); each SVD is computed once. Keyed by content (a
# hash of the bytes), so a changed or different matrix never hits; CPU matrices up to
# SVD_CACHE_MAX_ELEMENTS only (U, S, Vᴴ in float64 take ~2 x 8 bytes per element).
SVD_CACHE_ENTRIES, SVD_CACHE_MAX_ELEMENTS = 2, 1 << 22
SVD = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (U, S, Vᴴ)
_svd_cache: OrderedDict[tuple[tuple[int, ...], bytes], SVD] = OrderedDict()


def full_svd(weight: torch.Tensor) -> SVD:
    """``torch.linalg.svd(weight.double(), full_matrices=False)``, reused for equal matrices.

    The returned tensors are shared with the cache: callers must not modify them in place.
    """
    w = weight.double()
    if w.device.type != "cpu" or w.numel() > SVD_CACHE_MAX_ELEMENTS:
        svd: SVD = torch.linalg.svd(w, full_matrices=False)  # torch.linalg's functions are typed Any
        return svd
    key = (tuple(w.shape), hashlib.blake2b(w.contiguous().numpy().tobytes(), digest_size=16).digest())
    if key in _svd_cache:
        _svd_cache.move_to_end(key)
        return _svd_cache[key]
    result: SVD = torch.linalg.svd(w, full_matrices=False)
    _svd_cache[key] = result
    while len(_svd_cache) > SVD_CACHE_ENTRIES:
        _svd_cache.popitem(last=False)
    return result


def truncated_svd(
    weight: torch.Tensor, rank: int, *, lanczos: bool = False, reuse: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, B) with A B the best rank-``rank`` approximation of ``weight``, singular values split evenly.

    Computed in float64 for accuracy, returned in ``weight``'s dtype. ``lanczos``: on a CPU matrix
    with rank <= ``LANCZOS_MAX_FRACTION`` of min(m, n), only the leading triplets are computed
    (scipy's ARPACK ``svds`` to machine precision, fixed start vector): the same answer as the
    full SVD to rounding, e.g. 1 triplet of a 1296x1296 matrix in ~1/6 of the time. ``reuse``:
    the full SVD goes through :func:`full_svd`'s cache (not under ``vmap``).
    """
    if (
        lanczos
        and weight.device.type == "cpu"
        and 64 <= min(weight.shape)
        and rank <= LANCZOS_MAX_FRACTION * min(weight.shape)
    ):
        u, s, vh = _leading_svd(weight.double(), rank)
    elif reuse:
        u, s, vh = full_svd(weight)
    else:
        u, s, vh = torch.linalg.svd(weight.double(), full_matrices=False)
    root = s[:rank].sqrt()
    return (u[:, :rank] * root).to(weight.dtype), (root[:, None] * vh[:rank]).to(weight.dtype)


def whitened_svd(weight: torch.Tensor, rank: int, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, B) with A B the rank-``rank`` matrix minimising ‖X (W − A B)ᵀ‖_F (calibration-aware SVD).

    With L the whitening factor of X (LᵀL = XᵀX/tokens + ridge), ‖X (W − Ŵ)ᵀ‖² = tokens·‖(W − Ŵ)Lᵀ‖²,
    so the optimum is the truncated SVD of W Lᵀ mapped back: Ŵ = [W Lᵀ]_r L⁻ᵀ (Eckart–Young in the
    whitened coordinates; as in SVD-LLM). Float64 inside, ``weight``'s dtype out.
    """
    lt = whitening(X).to(weight.device).T  # lower triangular Lᵀ
    a, b = truncated_svd(weight.double() @ lt, rank)
    b = torch.linalg.solve_triangular(lt, b, upper=False, left=False)  # B L⁻ᵀ
    return a.to(weight.dtype), b.to(weight.dtype)


def rank_factors(weight: torch.Tensor, rank: int, X: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Truncated SVD of ``weight``, or its calibration-aware version when activations X are given."""
    return truncated_svd(weight, rank) if X is None else whitened_svd(weight, rank, X)


def _leading_svd(weight: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``rank`` leading singular triplets (u, s, vh), largest first, by ARPACK."""
    import numpy as np
    from scipy.sparse.linalg import svds

    start = np.random.default_rng(0).standard_normal(min(weight.shape))
    u, s, vh = svds(weight.numpy(), k=rank, tol=0, v0=start)
    order = np.argsort(s)[::-1].copy()
    return torch.from_numpy(u[:, order]), torch.from_numpy(s[order]), torch.from_numpy(vh[order])


class RankFormat(StructuredLinear):
    """Base of the formats whose one hyper-parameter is ``rank`` in 1..min(in, out)."""

    hparam_names = ("rank",)
    data_aware = True

    @classmethod
    def _check_hparams(cls, in_features, out_features, rank=None):
        return {"rank": check_rank(cls.name, in_features, out_features, rank)}

    @classmethod
    def hparam_grid(cls, in_features, out_features):
        return [{"rank": r} for r in rank_grid(min(in_features, out_features))]


@register_format
class LowRankLinear(RankFormat):
    """W = U V, rank r with 1 <= r <= min(in, out); params r(in + out); any shape."""

    name = "lowrank"

    @classmethod
    def count_params(cls, in_features, out_features, rank):
        return rank * (in_features + out_features)

    def _init_weights(self, dtype=None, device=None):
        r, fk = self.hp["rank"], {"dtype": dtype, "device": device}
        # Var(W_ij) = r · Var(U) · Var(V) = 1/in with Var(V) = 1/in, Var(U) = 1/r.
        self.U = nn.Parameter(torch.randn(self.out_features, r, **fk) / math.sqrt(r))
        self.V = nn.Parameter(torch.randn(r, self.in_features, **fk) / math.sqrt(self.in_features))

    def _forward_torch(self, x2d):
        return (x2d @ self.V.T) @ self.U.T

    def dense_weight(self):
        return self.U @ self.V

    def forward_flops(self, tokens):
        return 2 * tokens * self.hp["rank"] * (self.in_features + self.out_features)

    @torch.no_grad()
    def _project(self, weight, X=None):
        u, v = rank_factors(weight, self.hp["rank"], X)
        self.U.copy_(u)
        self.V.copy_(v)
