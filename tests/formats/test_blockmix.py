"""blockdiag, monarch and btt beyond the generic contract: storage, optimal projections, Monarch = BTT."""
import pytest
import torch

import mbs_layers as mbs

F64 = {"dtype": torch.float64, "backend": "torch"}
CASES = [  # (name, in, out, hparams)
    ("blockdiag", 24, 36, {"nblocks": 6}),
    ("blockdiag", 36, 24, {"nblocks": 3}),
    ("monarch", 16, 16, {"nblocks": 4}),
    ("monarch", 24, 24, {"nblocks": 4}),  # q/k = 1.5: block ranks 1 and 2
    ("monarch", 24, 36, {"nblocks": 3}),
    ("monarch", 48, 24, {"nblocks": 4}),
    ("btt", 24, 36, {"rank": 2}),
    ("btt", 30, 20, {"rank": 2, "in_factors": (5, 6), "out_factors": (4, 5)}),
]


def ids(case):
    return f"{case[0]}-{case[1]}x{case[2]}-" + "-".join(f"{k}{v}" for k, v in case[3].items())


def tail_norm(block, rank):
    """Frobenius error of the best rank-``rank`` approximation of ``block`` (Eckart–Young)."""
    return torch.linalg.svdvals(block)[rank:].square().sum()


def monarch_rank(k, q, i, j):
    """r_ij by its definition: rows a of w1[j] whose intermediate (j·q + a) lands in residue i."""
    return sum((j * q + a) % k == i for a in range(q))


def expected_error(name, w, hp):
    """Root-sum of what each format must drop, computed block by block from the definitions."""
    out_f, in_f = w.shape
    if name == "blockdiag":
        k = hp["nblocks"]
        s, p = out_f // k, in_f // k
        kept = sum(w[g * s:(g + 1) * s, g * p:(g + 1) * p].square().sum() for g in range(k))
        return (w.square().sum() - kept).sqrt()
    if name == "monarch":
        k = hp["nblocks"]
        p, q = in_f // k, min(in_f, out_f) // k
        return sum(tail_norm(w[i::k, j * p:(j + 1) * p], monarch_rank(k, q, i, j))
                   for i in range(k) for j in range(k)).sqrt()
    (n1, n2), (_, m2) = hp["in_factors"], hp["out_factors"]
    return sum(tail_norm(w[i2::m2, j1 * n2:(j1 + 1) * n2], hp["rank"])
               for i2 in range(m2) for j1 in range(n1)).sqrt()


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_param_count_is_stored_numel(case):
    name, in_f, out_f, hp = case
    layer = mbs.build(name, in_f, out_f, **F64, **hp)
    stored = sum(p.numel() for n, p in layer.named_parameters() if n != "bias")
    assert layer.param_count() == stored < in_f * out_f


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_projection_error_is_the_blockwise_optimum(case, rng):
    name, in_f, out_f, hp = case
    w = torch.randn(out_f, in_f, generator=rng, dtype=torch.float64)
    layer = mbs.approximate(name, w, **hp)
    err = torch.linalg.norm(layer.dense_weight() - w)
    torch.testing.assert_close(err, expected_error(name, w, layer.hparams), rtol=1e-9, atol=1e-9)


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
    torch.testing.assert_close(mbs.approximate("btt", w, rank=1).dense_weight(),
                               mbs.approximate("monarch", w, nblocks=k).dense_weight(), rtol=1e-9, atol=1e-9)


def test_monarch_with_regular_ranks_projects_like_btt(rng):
    """k | q: Monarch is BTT with rank q/k on the (k, k) grid — the same optimum."""
    n, k = 32, 2
    w = torch.randn(n, n, generator=rng, dtype=torch.float64)
    monarch = mbs.approximate("monarch", w, nblocks=k)
    btt = mbs.approximate("btt", w, rank=n // k // k, in_factors=(k, n // k), out_factors=(n // k, k))
    assert monarch.param_count() == btt.param_count()
    torch.testing.assert_close(monarch.dense_weight(), btt.dense_weight(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name,in_f,out_f,hp,named", [
    ("blockdiag", 24, 36, {"nblocks": 5}, "nblocks"),
    ("blockdiag", 24, 36, {"nblocks": 8}, "nblocks=8 must divide out_features"),
    ("blockdiag", 24, 36, {}, "nblocks is required"),
    ("monarch", 24, 36, {"nblocks": 9}, "nblocks=9 must divide in_features"),
    ("monarch", 24, 36, {"nblocks": 0}, "nblocks"),
    ("btt", 24, 36, {"rank": 7}, "rank=7 is out of range"),  # min(m1, n2) = min(6, 6)
    ("btt", 24, 36, {}, "rank is required"),
    ("btt", 24, 36, {"rank": 1, "in_factors": (5, 5)}, "in_factors"),
    ("btt", 24, 36, {"rank": 1, "in_factors": 24}, "in_factors"),
    ("btt", 24, 36, {"rank": 1, "out_factors": (6, 0)}, "out_factors"),
    ("btt", 24, 36, {"rank": 1, "out_factors": (4, 3, 3)}, "out_factors"),
])
def test_bad_hparams_raise_named_valueerror(name, in_f, out_f, hp, named):
    with pytest.raises(ValueError, match=named):
        mbs.build(name, in_f, out_f, **hp)
