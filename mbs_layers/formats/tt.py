"""Tensor-train (TT-matrix) format: W as a chain of ``cores`` small 4-way cores; TT-SVD projection.

With out = m_1···m_d and in = n_1···n_d, core k has shape (r_{k-1}, m_k, n_k, r_k), r_0 = r_d = 1,
and W[(i_1..i_d), (j_1..j_d)] = G_1[:, i_1, j_1, :] ··· G_d[:, i_d, j_d, :] (row-major multi-indices).
The forward, ``dense_weight`` and the projection's error contract the chain in the order a
planner (``mbs_layers.contraction``) finds cheapest in FLOPs among those whose intermediates
stay within the inputs + result + cores; steps touching x are "mode products"
``out[x] = G @ s[x]`` on a reshape (a view along a sweep), so a backend can swap in its kernel.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import ClassVar, overload

import torch
from torch import nn

from ..base import StructuredLinear, register_format
from ..contraction import Plan, plan
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
    allowed = f"a tuple of {parts} positive integers with product {dim_name}={dim}, e.g. {balanced_factors(dim, parts)}"
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
    out_factors = (
        balanced_factors(out_features, parts)
        if out_factors is None
        else check_factors("out_factors", out_factors, "out_features", out_features, parts)
    )
    in_factors = (
        balanced_factors(in_features, parts)[::-1]
        if in_factors is None
        else check_factors("in_factors", in_factors, "in_features", in_features, parts)
    )
    return out_factors, in_factors


def max_ranks(out_factors, in_factors) -> list[int]:
    """The largest meaningful TT rank at each of the d-1 cuts: min(left size, right size)."""
    sizes = [m * n for m, n in zip(out_factors, in_factors)]
    return [min(math.prod(sizes[:k]), math.prod(sizes[k:])) for k in range(1, len(sizes))]


# Intermediates are kept within (inputs + result + cores), chunking tokens if needed; where even
# one token needs over ``MEMORY_FACTOR`` times that, the layer raises before allocating.
MEMORY_FACTOR = 4


def chain_network(out_factors, in_factors, ranks, tokens: int | None):
    """(operands, sizes, output) of the TT chain; x (labels t, n0..) is operand 0 when ``tokens`` is
    given, else the network is the cores alone and the output is W's (m0.., n0..).

    Core k carries (r{k}, m{k}, n{k}, r{k+1}); labels of size 1 (the end bonds, Kronecker's middle
    bond, unit factors) are dropped, so cores joined only through x are contracted in whatever
    order is cheapest. The token label ``t`` is always kept (it marks x's side).
    """
    d, bonds = len(out_factors), (1, *ranks, 1)
    sizes = {
        **{f"m{k}": out_factors[k] for k in range(d)},
        **{f"n{k}": in_factors[k] for k in range(d)},
        **{f"r{k}": bonds[k] for k in range(d + 1)},
    }
    keep = lambda *labels: tuple(lab for lab in labels if sizes[lab] > 1)
    cores = [keep(f"r{k}", f"m{k}", f"n{k}", f"r{k + 1}") for k in range(d)]
    ms, ns = keep(*(f"m{k}" for k in range(d))), keep(*(f"n{k}" for k in range(d)))
    if tokens is None:
        return tuple(cores), sizes, ms + ns
    sizes["t"] = tokens
    return (("t", *ns), *cores), sizes, ("t", *ms)


def _elements(operands, sizes, output) -> int:
    """Elements of the operands and the result: the memory every order needs anyway."""
    return sum(math.prod(sizes[lab] for lab in op) for op in (*operands, output))


def _plan_for(out_factors, in_factors, ranks, tokens, limit) -> Plan:
    operands, sizes, output = chain_network(out_factors, in_factors, ranks, tokens)
    return plan(operands, tuple(sorted(sizes.items())), output, limit)


def _checked_plan(out_factors, in_factors, ranks, tokens: int | None, limit: int) -> Plan:
    """The cheapest plan within ``limit``; ``ValueError`` where it needs over ``MEMORY_FACTOR`` x ``limit``."""
    best = _plan_for(out_factors, in_factors, ranks, tokens, limit)
    if best.peak > MEMORY_FACTOR * limit:
        raise ValueError(
            f"tt chain out_factors={tuple(out_factors)}, in_factors={tuple(in_factors)}, ranks={tuple(ranks)} "
            f"needs an intermediate of {best.peak} elements, over {MEMORY_FACTOR}x its inputs and result "
            f"({limit}): allowed bond ranks that keep each core's unfoldings near its factor sizes"
        )
    return best


@overload
def chain_schedule(out_factors, in_factors, ranks, tokens: int) -> tuple[int, Plan, Plan | None, int]: ...
@overload
def chain_schedule(out_factors, in_factors, ranks, tokens: None) -> tuple[None, Plan, None, int]: ...
@lru_cache(maxsize=4096)
def chain_schedule(out_factors, in_factors, ranks, tokens: int | None) -> tuple[int | None, Plan, Plan | None, int]:
    """(chunk, plan per full chunk, plan for the last partial chunk or None, total FLOPs); chunk
    is None when ``tokens`` is (the chain computes W itself, in one piece).

    The memory allowed for any intermediate is ``limit`` = elements of x + result + cores. The
    FLOP-optimal order is used as is when it fits; otherwise tokens are processed in chunks small
    enough that it fits (each token's contraction is independent, so FLOPs do not grow, except
    for core-with-core steps repeated per chunk, which the per-chunk plan weighs). ``ValueError``,
    before anything is allocated, where even one token needs over ``MEMORY_FACTOR`` x ``limit``.
    """
    operands, sizes, output = chain_network(out_factors, in_factors, ranks, tokens)
    limit = _elements(operands, sizes, output)
    if tokens is None:
        full = _checked_plan(out_factors, in_factors, ranks, None, limit)
        return None, full, None, full.flops
    free = _plan_for(out_factors, in_factors, ranks, tokens, None)
    chunk = tokens if free.peak <= limit else max(1, tokens * limit // free.peak)
    full = _checked_plan(out_factors, in_factors, ranks, chunk, limit)
    if chunk == tokens:
        return chunk, full, None, full.flops
    rest = tokens % chunk
    last = _plan_for(out_factors, in_factors, ranks, rest, limit) if rest else None
    return chunk, full, last, (tokens // chunk) * full.flops + (last.flops if last else 0)


def mode_product(g: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``out[x] = g @ s[x]`` for g (N, K) and s (X, K, M); one GEMM when M = 1."""
    if s.shape[2] == 1:
        return (s[:, :, 0] @ g.T).unsqueeze(2)
    return torch.matmul(g, s)


def _pair(a, la, b, lb, contract):
    """Contract labelled tensors ``a`` and ``b`` over their shared labels: (result, its labels).

    With x on one side the step is a mode product ``g @ s[x]`` on s viewed (X, K, M) — a view when
    the shared labels are adjacent in s, as they are along a sweep — else tensordot of two cores.
    """
    if "t" in lb:
        a, la, b, lb = b, lb, a, la
    shared = [lab for lab in la if lab in lb]
    if "t" not in la:
        res = torch.tensordot(a, b, dims=([la.index(x) for x in shared], [lb.index(x) for x in shared]))
        return res, tuple(x for x in la if x not in shared) + tuple(x for x in lb if x not in shared)
    pos = [la.index(lab) for lab in shared] or [len(la)]  # nothing shared: an outer product, K = 1
    if shared and pos != list(range(pos[0], pos[0] + len(pos))):  # shared labels not adjacent: move them last
        order = [i for i in range(len(la)) if i not in pos] + pos
        a, la = a.permute(order), tuple(la[i] for i in order)
        pos = list(range(len(la) - len(pos), len(la)))
    before, after = la[: pos[0]], la[pos[0] + len(shared) :]
    g_kept = [lab for lab in lb if lab not in shared]
    g = b.permute([lb.index(x) for x in g_kept + shared])
    dims = dict(zip(la, a.shape)) | dict(zip(lb, b.shape))
    size = lambda labels: math.prod(dims[x] for x in labels)
    out = contract(g.reshape(size(g_kept), size(shared)), a.reshape(size(before), size(shared), size(after)))
    labels = before + tuple(g_kept) + after
    return out.reshape([dims[x] for x in labels]), labels


def run_chain(cores, x2d: torch.Tensor | None, contract=mode_product) -> torch.Tensor:
    """``x2d @ W.T`` (or W itself when ``x2d`` is None) for the TT-matrix ``cores``, in the planned
    order (token chunks where the cheapest order's intermediates would not fit, see :func:`chain_schedule`).

    ``contract(g, s)`` computes ``g @ s[x]`` for g (N, K), s (X, K, M): the step that touches x, so
    a backend swaps in its own kernel there; core-with-core steps are ``torch.tensordot``.
    """
    out_f, in_f = tuple(c.shape[1] for c in cores), tuple(c.shape[2] for c in cores)
    ranks = tuple(c.shape[3] for c in cores[:-1])
    if x2d is None:
        return _run_plan(cores, None, chain_schedule(out_f, in_f, ranks, None)[1], contract)
    tokens = x2d.shape[0]
    if tokens == 0:  # an empty batch, as nn.Linear accepts: nothing to contract
        empty: torch.Tensor = x2d.new_zeros(0, math.prod(out_f)) + 0 * sum(c.sum() for c in cores)
        return empty
    chunk, full, last, _ = chain_schedule(out_f, in_f, ranks, tokens)
    parts = [_run_plan(cores, x2d[i : i + chunk], full, contract) for i in range(0, tokens - chunk + 1, chunk)]
    if last is not None:  # the partial chunk left after the full ones
        parts.append(_run_plan(cores, x2d[len(parts) * chunk :], last, contract))
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _run_plan(cores, x2d, steps_plan: Plan, contract) -> torch.Tensor:
    out_f, in_f = [c.shape[1] for c in cores], [c.shape[2] for c in cores]
    ranks = [c.shape[3] for c in cores[:-1]]
    tokens = None if x2d is None else x2d.shape[0]
    operands, sizes, output = chain_network(out_f, in_f, ranks, tokens)
    tensors = [c.reshape([sizes[lab] for lab in op]) for c, op in zip(cores, operands[-len(cores) :])]
    if x2d is not None:
        tensors.insert(0, x2d.reshape([sizes[lab] for lab in operands[0]]))
    labels = list(operands)
    for i, j in steps_plan.steps:
        res, lab = _pair(tensors[i], labels[i], tensors[j], labels[j], contract)
        tensors[i] = tensors[j] = None  # free inputs as soon as they are used
        tensors.append(res)
        labels.append(lab)
    result: torch.Tensor = tensors[-1].permute([labels[-1].index(x) for x in output])
    if x2d is None:
        return result.reshape(math.prod(out_f), math.prod(in_f))
    return result.reshape(x2d.shape[0], math.prod(out_f))


def tt_flops(tokens: int, out_factors, in_factors, ranks) -> int:
    """FLOPs of the forward's planned contraction (see :func:`chain_schedule`)."""
    return chain_schedule(tuple(out_factors), tuple(in_factors), tuple(ranks), tokens)[3]


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
        left, rest = truncated_svd(unfolded, ranks[k], lanczos=True)
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
    def _check_hparams(cls, in_features, out_features, cores=3, rank=None, out_factors=None, in_factors=None):
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
    def budget_preference(cls, in_features, out_features, hp):
        """Splits with no factor of 1 first: a unit factor turns a core into a vector, wasting the chain."""
        return (1 not in hp["out_factors"] + hp["in_factors"],)

    @classmethod
    def hparam_grid(cls, in_features, out_features):
        grid = []
        for cores in (2, 3, 4):
            out_f, in_f = resolve_factors(in_features, out_features, None, None, cores)
            grid += [
                {"cores": cores, "rank": r, "out_factors": out_f, "in_factors": in_f}
                for r in rank_grid(min(max_ranks(out_f, in_f)))
            ]
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
        return run_chain(list(self.cores), x2d)

    def dense_weight(self):
        return run_chain(list(self.cores), None)

    def forward_flops(self, tokens):
        return tt_flops(tokens, *self.structure(self.hp))

    @classmethod
    def hparam_flops(cls, in_features, out_features, tokens, **hp):
        """The planned forward's FLOPs from the hyper-parameters alone (no layer is built)."""
        return tt_flops(tokens, *cls.structure(cls.check_hparams(in_features, out_features, **hp)))

    @torch.no_grad()
    def _project(self, weight):
        for core, fitted in zip(self.cores, tt_svd(weight, *self.structure(self.hp))):
            core.copy_(fitted)
