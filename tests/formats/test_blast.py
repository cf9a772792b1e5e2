"""BLAST format: structure, counts, optimal projections, named errors."""

import pytest
import torch
from projection_helpers import check_hparam_grid_is_valid, check_param_count_is_numel_of_stored_weights, tail

import mbs_layers as mbs

f64 = torch.float64


CASES = [  # (format, in, out, hparams)
    ("blast", 48, 96, {"nblocks": 4, "rank": 5}),
    ("blast", 37, 53, {"nblocks": 1, "rank": 7}),
]


@pytest.mark.parametrize("name,in_f,out_f,hp", CASES)
def test_param_count_is_numel_of_stored_weights(name, in_f, out_f, hp):
    check_param_count_is_numel_of_stored_weights(name, in_f, out_f, hp)


def test_blast_blocks_are_shared_bases_times_diagonal():
    layer = mbs.build("blast", 48, 96, nblocks=4, rank=5, dtype=f64)
    w = layer.dense_weight()
    i, j = 3, 1
    block = w[i * 24 : (i + 1) * 24, j * 12 : (j + 1) * 12]
    torch.testing.assert_close(block, layer.U[i] @ torch.diag(layer.s[i, j]) @ layer.V[j].T)
    assert layer.forward_flops(5) == 2 * 5 * 5 * (48 + 96 + 16)


def test_blast_with_one_block_projects_to_the_eckart_young_optimum(rng):
    w = torch.randn(40, 30, generator=rng, dtype=f64)
    layer = mbs.approximate("blast", w, nblocks=1, rank=6)
    err = torch.linalg.norm(layer.dense_weight() - w)
    torch.testing.assert_close(err, tail(torch.linalg.svdvals(w), 6))


def test_blast_projection_is_deterministic_and_beats_lowrank_on_gaussian(rng):
    w = torch.randn(64, 64, generator=rng, dtype=f64)
    a = mbs.approximate("blast", w, nblocks=4, rank=8).dense_weight()
    b = mbs.approximate("blast", w, nblocks=4, rank=8).dense_weight()
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    params = mbs.FORMATS["blast"].count_params(64, 64, nblocks=4, rank=8)
    lowrank_err = tail(torch.linalg.svdvals(w), params // 128)
    assert torch.linalg.norm(a - w) < lowrank_err


@pytest.mark.parametrize("name,hp", [("blast", {"nblocks": 4, "rank": 3})])
def test_projection_of_zero_is_zero(name, hp):
    layer = mbs.approximate(name, torch.zeros(24, 16, dtype=f64), **hp)
    assert torch.count_nonzero(layer.dense_weight()) == 0


def test_blast_projection_handles_a_zero_block_row(rng):
    w = torch.randn(64, 48, generator=rng, dtype=f64)
    w[:16] = 0
    approx = mbs.approximate("blast", w, nblocks=4, rank=8).dense_weight()
    assert torch.isfinite(approx).all() and torch.count_nonzero(approx[:16]) == 0
    assert torch.linalg.norm(approx - w) < torch.linalg.norm(w)


@pytest.mark.parametrize("name", ["blast"])
@pytest.mark.parametrize("in_f,out_f", [(37, 53), (1, 7), (97, 97), (30, 42)])
def test_hparam_grid_is_valid_for_awkward_shapes(name, in_f, out_f):
    check_hparam_grid_is_valid(name, in_f, out_f)


@pytest.mark.parametrize(
    "name,hp,named",
    [
        ("blast", {"nblocks": 5, "rank": 2}, "nblocks"),
        ("blast", {"nblocks": 4, "rank": 33}, "rank"),
        ("blast", {"rank": 4}, "nblocks"),
    ],
)
def test_bad_hparams_raise_valueerror_naming_them(name, hp, named):
    with pytest.raises(ValueError, match=named):
        mbs.build(name, 32, 32, **hp)
