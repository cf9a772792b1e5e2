"""Kronecker format: structure, counts, optimal projections, named errors."""

import pytest
import torch
from projection_helpers import (
    check_hparam_grid_is_valid,
    check_param_count_is_numel_of_stored_weights,
    rearranged,
    tail,
)

import mbs_layers as mbs

f64 = torch.float64


CASES = [  # (format, in, out, hparams)
    ("kronecker", 36, 60, {}),
    ("kronecker", 37, 53, {"out_factors": (53, 1), "in_factors": (1, 37)}),
]


@pytest.mark.parametrize("name,in_f,out_f,hp", CASES)
def test_param_count_is_numel_of_stored_weights(name, in_f, out_f, hp):
    check_param_count_is_numel_of_stored_weights(name, in_f, out_f, hp)


@pytest.mark.parametrize("name,hp", [("kronecker", {})])
def test_projection_of_zero_is_zero(name, hp):
    layer = mbs.approximate(name, torch.zeros(24, 16, dtype=f64), **hp)
    assert torch.count_nonzero(layer.dense_weight()) == 0


def test_kronecker_is_torch_kron_of_its_factors():
    layer = mbs.build("kronecker", 12, 15, out_factors=(3, 5), in_factors=(4, 3), dtype=f64)
    assert layer.A.shape == (3, 4) and layer.B.shape == (5, 3)
    torch.testing.assert_close(layer.dense_weight(), torch.kron(layer.A, layer.B))


def test_kronecker_projection_error_is_the_rearranged_tail(rng):
    w = torch.randn(15, 12, generator=rng, dtype=f64)
    layer = mbs.approximate("kronecker", w, out_factors=(3, 5), in_factors=(4, 3))
    err = torch.linalg.norm(layer.dense_weight() - w)
    torch.testing.assert_close(err, tail(torch.linalg.svdvals(rearranged(w, 3, 4, 5, 3)), 1))


@pytest.mark.parametrize("name", ["kronecker"])
@pytest.mark.parametrize("in_f,out_f", [(37, 53), (1, 7), (97, 97), (30, 42)])
def test_hparam_grid_is_valid_for_awkward_shapes(name, in_f, out_f):
    check_hparam_grid_is_valid(name, in_f, out_f)


@pytest.mark.parametrize(
    "name,hp,named",
    [
        ("kronecker", {"out_factors": (4, 4)}, "out_factors"),
        ("kronecker", {"in_factors": (2, 4, 4)}, "in_factors"),
    ],
)
def test_bad_hparams_raise_valueerror_naming_them(name, hp, named):
    with pytest.raises(ValueError, match=named):
        mbs.build(name, 32, 32, **hp)
