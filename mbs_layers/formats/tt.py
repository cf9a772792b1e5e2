"""Tensor-train (TT-matrix) format: W as a chain of ``cores`` small 4-way cores; TT-SVD projection.

With out = m_1···m_d and in = n_1···n_d, core k has shape (r_{k-1}, m_k, n_k, r_k), r_0 = r_d = 1,
and W[(i_1..i_d), (j_1..j_d)] = G_1[:, i_1, j_1, :] ··· G_d[:, i_d, j_d, :] (row-major multi-indices).
The forward contracts x with one core at a time (last core first); every step is the same
"mode product" ``out[x] = G_k @ s[x]`` on a contiguous reshape, so no permute is ever needed.
"""
from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from ..base import StructuredLinear, register_format
from ..validation import check_int
from .lowrank import rank_grid, truncated_svd


def balanced_factors(n: int, parts: int) -> tuple[int, ...]:
    """``n`` as ``parts`` factors, as equal as its primes allow (largest first; 1s where n runs out)."""
    primes, rest, p = [], n, 2
    while p * p <= rest:
        while rest % p == 0:
            primes.append(p)
            rest //= p
        p += 1
    if rest > 1:
        primes.append(rest)
    factors = [1] * parts
    for prime in sorted(primes, reverse=True):
        factors[factors.index(min(factors))] *= prime
    return tuple(sorted(factors, reverse=True))


def check_factors(name: str, value, dim_name: str, dim: int, parts: int) -> tuple[int, ...]:
    """``value`` must be ``parts`` positive integers whose product is ``dim``."""
    allowed = (f"a tuple of {parts} positive integers with product {dim_name}={dim}, "
               f"e.g. {balanced_factors(dim, parts)}")
    if not isinstance(value, (tuple, list)) or len(value) != parts:
        raise ValueError(f"{name}={value!r} is not supported: allowed {allowed}")
    factors = tuple(check_int(f"{name}[{k}]", f, low=1) for k, f in enumerate(value))
    if math.prod(factors) != dim:
        raise ValueError(f"{name}={factors} has product {math.prod(factors)}: allowed {allowed}")
    return factors


def resolve_factors(in_features, out_features, out_factors, in_factors, parts):
    """Validated (out_factors, in_factors); ``None`` means the most balanced factorisation.

    Defaults put out's factors descending and in's ascending, so prime dimensions give
    (p, 1, .., 1) and (1, .., 1, p): a rank-r chain (low-rank-like) rather than one dense core.
    """
    out_factors = balanced_factors(out_features, parts) if out_factors is None else \
        check_factors("out_factors", out_factors, "out_features", out_features, parts)
    in_factors = balanced_factors(in_features, parts)[::-1] if in_factors is None else \
        check_factors("in_factors", in_factors, "in_features", in_features, parts)
    return out_factors, in_factors


def max_ranks(out_factors, in_factors) -> list[int]:
    """The largest meaningful TT rank at each of the d-1 cuts: min(left size, right size)."""
    sizes = [m * n for m, n in zip(out_factors, in_factors)]
    return [min(math.prod(sizes[:k]), math.prod(sizes[k:])) for k in range(1, len(sizes))]


def tt_apply(cores, x2d: torch.Tensor, contract=torch.matmul) -> torch.Tensor:
    """``x2d @ W.T`` for the TT-matrix ``cores``, one mode product per core (last core first).

    The running tensor is laid out (tokens·n_1..n_{k-1}, n_k·r_k, m_{k+1}..m_d); multiplying by
    core k reshaped to (r_{k-1}·m_k, n_k·r_k) leaves (tokens·n_1..n_{k-1}, r_{k-1}·m_k, m_{k+1}..m_d),
    which is already the next step's layout. ``contract(G, s)`` computes ``G @ s`` batched over s.
    """
    tokens = x2d.shape[0]
    s, n_left, m_right = x2d, x2d.shape[1], 1
    for core in reversed(cores):
        r0, mk, nk, r1 = core.shape
        n_left //= nk
        s = contract(core.reshape(r0 * mk, nk * r1), s.reshape(tokens * n_left, nk * r1, m_right))
        m_right *= mk
    return s.reshape(tokens, m_right)


def tt_flops(tokens: int, out_factors, in_factors, ranks) -> int:
    """FLOPs of :func:`tt_apply`: core k costs 2·tokens·n_<k·m_>k·r_{k-1}·m_k·n_k·r_k."""
    d, bonds = len(out_factors), (1, *ranks, 1)
    return sum(
        2 * tokens * math.prod(in_factors[:k]) * math.prod(out_factors[k + 1:])
        * bonds[k] * out_factors[k] * in_factors[k] * bonds[k + 1]
        for k in range(d)
    )


def tt_svd(weight: torch.Tensor, out_factors, in_factors, ranks) -> list[torch.Tensor]:
    """TT-SVD (Oseledets 2011): sweep left to right, truncating an SVD at each cut to its rank.

    W is reshaped to the tensor with modes (m_k, n_k) interleaved; at cut k the remainder is
    unfolded as (r_{k-1}·m_k·n_k, rest) and split by :func:`truncated_svd` (singular values shared
    between the core and the remainder). Quasi-optimal in general (error <= sqrt(d-1) x best);
    for d = 2 it is exactly the best rank-r approximation of the unfolding.
    """
    d = len(out_factors)
    t = weight.reshape(*out_factors, *in_factors)
    t = t.permute(*[p for k in range(d) for p in (k, d + k)])  # (m1, n1, m2, n2, ...)
    rest, cores, r_prev = t.reshape(1, -1), [], 1
    for k in range(d - 1):
        unfolded = rest.reshape(r_prev * out_factors[k] * in_factors[k], -1)
        left, rest = truncated_svd(unfolded, ranks[k])
        cores.append(left.reshape(r_prev, out_factors[k], in_factors[k], ranks[k]))
        r_prev = ranks[k]
    cores.append(rest.reshape(r_prev, out_factors[-1], in_factors[-1], 1))
    return cores


@register_format
class TTLinear(StructuredLinear):
    """Tensor-train matrix with ``cores`` d (2..8) and uniform bond ``rank`` r.

    ``out_factors``/``in_factors`` (d positive integers with product out/in) default to the most
    balanced factorisations (see :func:`resolve_factors`). r must not exceed the smallest cut size
    min(prod_{<=k} m_i n_i, prod_{>k} m_i n_i). params = sum_k r_{k-1} m_k n_k r_k.
    """

    name = "tt"
    hparam_names: ClassVar[tuple[str, ...]] = ("cores", "rank", "out_factors", "in_factors")

    @classmethod
    def _check_hparams(cls, in_features, out_features, cores=3, rank=None, out_factors=None,
                       in_factors=None):
        cores = check_int("cores", cores, low=2, high=8)
        out_factors, in_factors = resolve_factors(in_features, out_features, out_factors, in_factors, cores)
        limit = min(max_ranks(out_factors, in_factors))
        if rank is None:
            raise ValueError(f"rank is required for tt: allowed 1 <= rank <= {limit} for these factors")
        rank = check_int("rank", rank, low=1, high=limit)
        return {"cores": cores, "rank": rank, "out_factors": out_factors, "in_factors": in_factors}

    @classmethod
    def structure(cls, hp) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(out_factors, in_factors, bond ranks r_1..r_{d-1}) of validated hyper-parameters."""
        return hp["out_factors"], hp["in_factors"], (hp["rank"],) * (hp["cores"] - 1)

    @classmethod
    def count_params(cls, in_features, out_features, **hp):
        hp = cls.check_hparams(in_features, out_features, **hp)
        out_f, in_f, ranks = cls.structure(hp)
        bonds = (1, *ranks, 1)
        return sum(bonds[k] * out_f[k] * in_f[k] * bonds[k + 1] for k in range(len(out_f)))

    @classmethod
    def hparam_grid(cls, in_features, out_features):
        grid = []
        for cores in (2, 3, 4):
            out_f, in_f = resolve_factors(in_features, out_features, None, None, cores)
            grid += [{"cores": cores, "rank": r, "out_factors": out_f, "in_factors": in_f}
                     for r in rank_grid(min(max_ranks(out_f, in_f)))]
        return grid

    def _init_weights(self, dtype=None, device=None):
        out_f, in_f, ranks = self.structure(self.hp)
        bonds = (1, *ranks, 1)
        # Var(W_ij) = prod_k r_k · prod_k std^2 = 1/in with equal per-core std.
        std = (self.in_features * math.prod(ranks)) ** (-0.5 / len(out_f))
        self.cores = nn.ParameterList(
            nn.Parameter(std * torch.randn(bonds[k], out_f[k], in_f[k], bonds[k + 1], dtype=dtype, device=device))
            for k in range(len(out_f))
        )

    def _forward_torch(self, x2d):
        return tt_apply(list(self.cores), x2d)

    def dense_weight(self):
        eye = torch.eye(self.in_features, dtype=self.cores[0].dtype, device=self.cores[0].device)
        return tt_apply(list(self.cores), eye).T

    def forward_flops(self, tokens):
        return tt_flops(tokens, *self.structure(self.hp))

    @torch.no_grad()
    def _project(self, weight):
        for core, fitted in zip(self.cores, tt_svd(weight, *self.structure(self.hp))):
            core.copy_(fitted)
