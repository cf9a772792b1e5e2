"""Contraction planning of the tt / kronecker chains, and their budget choices (issue 16)."""

import math
import random

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import mbs_layers as mbs
from mbs_layers.contraction import plan
from mbs_layers.formats.tt import chain_network, chain_schedule


def brute_force(operands, sizes, output, limit):
    """Fewest FLOPs over every binary contraction tree whose intermediates fit ``limit`` (None: none)."""

    def kept(group):
        inside = set().union(*(operands[i] for i in group))
        outside = set(output).union(*(operands[i] for i in range(len(operands)) if i not in group))
        return inside & outside

    def best(group):  # min flops of contracting ``group`` (a frozenset of operand positions)
        if len(group) == 1:
            return 0
        if math.prod(sizes[lab] for lab in kept(group)) > limit:
            return math.inf
        items, result = sorted(group), math.inf
        for mask in range(1 << (len(items) - 1)):  # the first item stays on the left
            left = frozenset([items[0]] + [items[i + 1] for i in range(len(items) - 1) if mask >> i & 1])
            right = group - left
            if not right:
                continue
            step = 2 * math.prod(sizes[lab] for lab in kept(left) | kept(right))
            result = min(result, best(left) + best(right) + step)
        return result

    return best(frozenset(range(len(operands))))


@pytest.mark.parametrize("seed", range(12))
def test_planner_matches_brute_force_on_small_chains(seed):
    rnd = random.Random(seed)
    d = rnd.randint(2, 4)
    out_f = [rnd.choice([1, 2, 3, 5]) for _ in range(d)]
    in_f = [rnd.choice([1, 2, 4, 6]) for _ in range(d)]
    ranks = [rnd.randint(1, 6) for _ in range(d - 1)]
    tokens = rnd.choice([None, 1, 3, 40])
    operands, sizes, output = chain_network(out_f, in_f, ranks, tokens)
    everything = math.prod(sizes.values())
    for limit in (None, everything, rnd.randint(1, 200)):
        expected = brute_force(operands, sizes, output, math.inf if limit is None else limit)
        found = plan(operands, tuple(sorted(sizes.items())), output, limit)
        if expected == math.inf:  # nothing fits: the planner falls back to the smallest peak
            assert found.peak > limit
        else:
            assert found.flops == expected
            assert limit is None or found.peak <= limit


def test_kronecker_budget_takes_the_thesis_split_at_1296():
    hp = mbs.FORMATS["kronecker"].hparams_for_budget(1296, 1296, 2592)
    assert hp == {"out_factors": (36, 36), "in_factors": (36, 36)}


@pytest.mark.parametrize("n,frac", [(2048, 0.05), (1024, 0.25), (96, 0.5)])
def test_kronecker_budget_avoids_unit_factors_when_others_fit(n, frac):
    hp = mbs.FORMATS["kronecker"].hparams_for_budget(n, n, int(frac * n * n))
    assert 1 not in hp["out_factors"] + hp["in_factors"]


def test_kronecker_unit_factor_only_when_nothing_else_fits():
    hp = mbs.FORMATS["kronecker"].hparams_for_budget(37, 53, 37 * 53)  # both dimensions prime
    assert 1 in hp["out_factors"] + hp["in_factors"]


@pytest.mark.parametrize("name", ["tt", "kronecker"])
@pytest.mark.parametrize("frac", [0.01, 0.05, 0.25, 0.5])
def test_budget_never_costs_more_flops_than_dense_unless_asked(name, frac):
    cls, n = mbs.FORMATS[name], 1296
    hp = cls.hparams_for_budget(n, n, int(frac * n * n))
    assert cls.hparam_flops(n, n, n, **hp) <= 2 * n**3
    hp_more = cls.hparams_for_budget(n, n, int(frac * n * n), allow_more_flops=True)
    assert cls.count_params(n, n, **hp_more) >= cls.count_params(n, n, **hp)


def test_more_flops_than_dense_raises_a_named_error_when_nothing_cheaper_fits():
    with pytest.raises(ValueError, match="allow_more_flops"):
        mbs.FORMATS["blast"].hparams_for_budget(1, 7, 9)


def test_degenerate_kronecker_forward_needs_no_tokens_x_in_x_out_intermediate():
    """The issue's split (1, n) x (n, 1): the old last-core-first order built tokens·n·n."""
    n, tokens = 1296, 1296
    _, full, _, flops = chain_schedule((1, n), (n, 1), (1,), tokens)
    assert full.peak <= tokens * 2 * n + 2 * n  # x + y + cores
    assert flops <= 2 * tokens * 2 * n  # two rank-1 products


@pytest.mark.parametrize("backend", ["torch"])
def test_chunked_forward_equals_dense_and_counts_its_flops(backend):
    """A TT whose cheapest order needs more than x + y + cores runs in token chunks, same result."""
    layer = mbs.build(
        "tt",
        64,
        64,
        cores=2,
        rank=3,
        out_factors=(8, 8),
        in_factors=(8, 8),
        bias=False,
        dtype=torch.float64,
        backend=backend,
    )
    x = torch.randn(50, 64, dtype=torch.float64)
    chunk, *_ = chain_schedule((8, 8), (8, 8), (3,), 50)
    assert chunk < 50
    with FlopCounterMode(display=False) as counter:
        y = layer(x)
    torch.testing.assert_close(y, x @ layer.dense_weight().T)
    assert counter.get_total_flops() == layer.forward_flops(50)


def test_chain_over_memory_factor_raises_before_allocating(monkeypatch):
    """Valid ranks stay near 1x (x + y + cores) per token; the guard is shown with a lowered factor."""
    from mbs_layers.formats import tt

    monkeypatch.setattr(tt, "MEMORY_FACTOR", 0.01)
    with pytest.raises(ValueError, match="intermediate"):
        mbs.build("tt", 27, 27, cores=3, rank=5, bias=False)(torch.randn(3, 27))


@pytest.mark.parametrize("rank", [1, 3, 12])
def test_lanczos_truncated_svd_is_the_full_svd_answer(rank):
    from mbs_layers.formats.lowrank import truncated_svd

    w = torch.randn(96, 130, generator=torch.Generator().manual_seed(rank), dtype=torch.float64)
    a, b = truncated_svd(w, rank, lanczos=True)
    a_full, b_full = truncated_svd(w, rank)
    torch.testing.assert_close(a @ b, a_full @ b_full, rtol=0, atol=1e-10)
