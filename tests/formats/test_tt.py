"""Tensor-train format: structure, counts, optimal projections, named errors."""

import math

import pytest
import torch
from projection_helpers import (
    check_hparam_grid_is_valid,
    check_param_count_is_numel_of_stored_weights,
    rearranged,
    tail,
)

import mbs_layers as mbs
from mbs_layers.formats.tt import balanced_factors

f64 = torch.float64


CASES = [  # (format, in, out, hparams)
    ("tt", 48, 96, {"cores": 3, "rank": 4}),
    ("tt", 60, 36, {"cores": 2, "rank": 6, "out_factors": (4, 9), "in_factors": (10, 6)}),
    ("tt", 37, 53, {"cores": 4, "rank": 1}),
]


@pytest.mark.parametrize("name,in_f,out_f,hp", CASES)
def test_param_count_is_numel_of_stored_weights(name, in_f, out_f, hp):
    check_param_count_is_numel_of_stored_weights(name, in_f, out_f, hp)


@pytest.mark.parametrize("name,hp", [("tt", {"cores": 3, "rank": 2})])
def test_projection_of_zero_is_zero(name, hp):
    layer = mbs.approximate(name, torch.zeros(24, 16, dtype=f64), **hp)
    assert torch.count_nonzero(layer.dense_weight()) == 0


def test_tt_with_two_cores_projects_to_the_best_rank_r_unfolding(rng):
    w = torch.randn(24, 20, generator=rng, dtype=f64)
    hp = {"cores": 2, "rank": 5, "out_factors": (4, 6), "in_factors": (5, 4)}
    layer = mbs.approximate("tt", w, **hp)
    err = torch.linalg.norm(layer.dense_weight() - w)
    torch.testing.assert_close(err, tail(torch.linalg.svdvals(rearranged(w, 4, 5, 6, 4)), 5))


def test_tt_svd_meets_the_oseledets_bound(rng):
    """TT-SVD error² <= Σ_k (best rank-r error of the k-th unfolding)²."""
    out_f, in_f = (2, 3, 4), (3, 2, 2)
    w = torch.randn(24, 12, generator=rng, dtype=f64)
    layer = mbs.approximate("tt", w, cores=3, rank=3, out_factors=out_f, in_factors=in_f)
    t = w.reshape(*out_f, *in_f).permute(0, 3, 1, 4, 2, 5)  # (m1, n1, m2, n2, m3, n3)
    bound = sum(tail(torch.linalg.svdvals(t.reshape(math.prod(t.shape[: 2 * k]), -1)), 3) ** 2 for k in (1, 2))
    assert torch.linalg.norm(layer.dense_weight() - w) ** 2 <= bound * (1 + 1e-12)


def test_tt_rank_one_with_two_cores_is_the_kronecker_product():
    hp = {"out_factors": (3, 5), "in_factors": (4, 3)}
    kron = mbs.build("kronecker", 12, 15, dtype=f64, **hp)
    tt = mbs.build("tt", 12, 15, dtype=f64, cores=2, rank=1, **hp)
    tt.load_state_dict(kron.state_dict())
    torch.testing.assert_close(tt.dense_weight(), torch.kron(kron.A, kron.B))


def test_tt_dense_weight_matches_explicit_core_contraction():
    layer = mbs.build("tt", 12, 24, cores=3, rank=2, out_factors=(2, 3, 4), in_factors=(3, 2, 2), dtype=f64)
    g1, g2, g3 = layer.cores
    w = torch.einsum("aipb,bjqc,ckrd->ijkpqr", g1, g2, g3).reshape(24, 12)
    torch.testing.assert_close(layer.dense_weight(), w)


@pytest.mark.parametrize(
    "n,parts,expected", [(48, 3, (4, 4, 3)), (37, 3, (37, 1, 1)), (1, 2, (1, 1)), (1024, 4, (4, 4, 8, 8)[::-1])]
)
def test_balanced_factors(n, parts, expected):
    assert balanced_factors(n, parts) == expected


@pytest.mark.parametrize("name", ["tt"])
@pytest.mark.parametrize("in_f,out_f", [(37, 53), (1, 7), (97, 97), (30, 42)])
def test_hparam_grid_is_valid_for_awkward_shapes(name, in_f, out_f):
    check_hparam_grid_is_valid(name, in_f, out_f)


def test_tt_on_prime_dimensions_is_a_compressing_chain():
    hp = mbs.FORMATS["tt"].hparams_for_budget(37, 53, 37 * 53 // 4)
    assert hp["out_factors"] == (53, 1, 1) and hp["in_factors"] == (1, 1, 37)
    assert mbs.FORMATS["tt"].count_params(37, 53, **hp) > 37 * 53 // 5


@pytest.mark.parametrize(
    "name,hp,named",
    [
        ("tt", {"cores": 3}, "rank"),
        ("tt", {"cores": 1, "rank": 2}, "cores"),
        ("tt", {"cores": 2, "rank": 2, "in_factors": (4, 4, 2)}, "in_factors"),
        ("tt", {"cores": 2, "rank": 2, "out_factors": (2, 0)}, "out_factors"),
        ("tt", {"cores": 2, "rank": 65, "out_factors": (8, 4), "in_factors": (8, 4)}, "rank"),
    ],
)
def test_bad_hparams_raise_valueerror_naming_them(name, hp, named):
    with pytest.raises(ValueError, match=named):
        mbs.build(name, 32, 32, **hp)
