"""Monarch beyond the generic contract: storage, block ranks, optimal projections, Monarch = BTT."""

import pytest
import torch
from projection_helpers import (
    F64,
    check_param_count_is_stored_numel,
    check_projection_is_the_blockwise_optimum,
    ids,
    monarch_rank,
)

import mbs_layers as mbs

CASES = [  # (name, in, out, hparams)
    ("monarch", 16, 16, {"nblocks": 4}),
    ("monarch", 24, 24, {"nblocks": 4}),  # q/k = 1.5: block ranks 1 and 2
    ("monarch", 24, 36, {"nblocks": 3}),
    ("monarch", 48, 24, {"nblocks": 4}),
]


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_param_count_is_stored_numel(case):
    check_param_count_is_stored_numel(case)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_projection_error_is_the_blockwise_optimum(case, rng):
    check_projection_is_the_blockwise_optimum(case, rng)


@pytest.mark.parametrize("in_f,out_f,k", [(24, 24, 4), (24, 36, 3), (48, 24, 4), (36, 36, 2)])
def test_monarch_block_ranks_account_for_every_parameter(in_f, out_f, k):
    layer = mbs.build("monarch", in_f, out_f, nblocks=k, **F64)
    ranks = layer.block_ranks()
    q = min(in_f, out_f) // k
    assert ranks.tolist() == [[monarch_rank(k, q, i, j) for j in range(k)] for i in range(k)]
    # each block pair stores r_ij columns of length s in w2 and rows of length p in w1
    assert int(ranks.sum()) * (in_f // k + out_f // k) == layer.param_count()


def test_square_monarch_with_sqrt_blocks_is_btt_rank_one(rng):
    n, k = 36, 6
    monarch = mbs.build("monarch", n, n, nblocks=k, bias=False, **F64)
    btt = mbs.build("btt", n, n, rank=1, bias=False, **F64)
    assert btt.hparams["in_factors"] == btt.hparams["out_factors"] == (k, k)
    assert btt.param_count() == monarch.param_count() == 2 * n * n // k
    with torch.no_grad():  # the same numbers: R[j1, i2, 0, j2] = w1[j1, i2, j2], L[i2, i1, j1, 0] = w2[i2, i1, j1]
        btt.R.copy_(monarch.w1.unsqueeze(2))
        btt.L.copy_(monarch.w2.unsqueeze(3))
    torch.testing.assert_close(btt.dense_weight(), monarch.dense_weight(), rtol=0, atol=1e-14)
    w = torch.randn(n, n, generator=rng, dtype=torch.float64)
    torch.testing.assert_close(
        mbs.approximate("btt", w, rank=1).dense_weight(),
        mbs.approximate("monarch", w, nblocks=k).dense_weight(),
        rtol=1e-9,
        atol=1e-9,
    )


def test_monarch_with_regular_ranks_projects_like_btt(rng):
    """k | q: Monarch is BTT with rank q/k on the (k, k) grid — the same optimum."""
    n, k = 32, 2
    w = torch.randn(n, n, generator=rng, dtype=torch.float64)
    monarch = mbs.approximate("monarch", w, nblocks=k)
    btt = mbs.approximate("btt", w, rank=n // k // k, in_factors=(k, n // k), out_factors=(n // k, k))
    assert monarch.param_count() == btt.param_count()
    torch.testing.assert_close(monarch.dense_weight(), btt.dense_weight(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(
    "name,in_f,out_f,hp,named",
    [
        ("monarch", 24, 36, {"nblocks": 9}, "nblocks=9 must divide in_features"),
        ("monarch", 24, 36, {"nblocks": 0}, "nblocks"),
    ],
)
def test_bad_hparams_raise_named_valueerror(name, in_f, out_f, hp, named):
    with pytest.raises(ValueError, match=named):
        mbs.build(name, in_f, out_f, **hp)
