"""Low-Rank Light: counts, storage, projection optimality, named errors."""

import pytest
import torch
from projection_helpers import rel_err

import mbs_layers as mbs
from mbs_layers.formats.lowrank_light import ridge_strength


def svd_tail(w, rank):
    return torch.linalg.svdvals(w)[rank:].norm() / torch.linalg.norm(w)


@pytest.mark.parametrize("name,hp", [("lowrank_light", {"rank": 7})])
@pytest.mark.parametrize("in_f,out_f", [(40, 24), (24, 40), (33, 33)])
def test_param_count_is_numel_of_stored_values(name, hp, in_f, out_f):
    layer = mbs.build(name, in_f, out_f, bias=False, **hp)
    assert layer.param_count() == sum(p.numel() for p in layer.parameters())


def test_lowrank_light_params_formula():
    cls = mbs.FORMATS["lowrank_light"]
    assert cls.count_params(100, 60, rank=10) == 10 * (100 + 60 - 10)
    assert cls.count_params(100, 60, rank=60) == 60 * 100  # full rank is dense


def test_lowrank_light_projection_equals_svd_with_well_conditioned_leading_block(rng):
    m, n, r = 30, 50, 6
    # Right singular vectors near the identity make the r x r leading block well-conditioned.
    q = torch.linalg.qr(
        torch.eye(n, dtype=torch.float64) + 0.2 * torch.randn(n, n, generator=rng, dtype=torch.float64)
    )[0]
    p = torch.linalg.qr(torch.randn(m, m, generator=rng, dtype=torch.float64))[0]
    s = torch.linspace(10, 1, m, dtype=torch.float64)
    w = p * s @ q[:, :m].T
    assert torch.linalg.cond(q[:r, :r]) < 10
    layer = mbs.approximate("lowrank_light", w, rank=r)
    assert rel_err(layer, w) == pytest.approx(svd_tail(w, r).item(), rel=1e-10)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_lowrank_light_singular_leading_block_stays_finite_and_no_worse_than_zero(rng, dtype):
    w = torch.randn(20, 30, generator=rng, dtype=torch.float64)
    w[:, :4] *= 1e-12  # leading block numerically singular: the plain re-expression blows up
    w = w.to(dtype)
    layer = mbs.approximate("lowrank_light", w, rank=4)
    assert torch.isfinite(layer.U).all() and torch.isfinite(layer.V).all()
    # The ridge caps V at about ‖Q₂‖/ρ (up to the conditioning of the singular values).
    assert layer.V.abs().max() <= 10 / ridge_strength(dtype)
    assert svd_tail(w.double(), 4) <= rel_err(layer, w) < 1


@pytest.mark.parametrize("size", [(64, 64), (48, 80), (80, 48)])
@pytest.mark.parametrize("frac", [0.05, 0.2, 0.5])
def test_lowrank_light_at_least_as_good_as_lowrank_at_equal_params(rng, size, frac):
    out_f, in_f = size
    w = torch.randn(out_f, in_f, generator=rng, dtype=torch.float64)
    budget = int(frac * in_f * out_f)
    hp_light = mbs.FORMATS["lowrank_light"].hparams_for_budget(in_f, out_f, budget)
    hp_low = mbs.FORMATS["lowrank"].hparams_for_budget(in_f, out_f, budget)
    assert hp_light["rank"] >= hp_low["rank"]
    err_light = rel_err(mbs.approximate("lowrank_light", w, **hp_light), w)
    err_low = rel_err(mbs.approximate("lowrank", w, **hp_low), w)
    assert err_light <= err_low * (1 + 1e-9)
    if hp_light["rank"] > hp_low["rank"]:
        assert err_light < err_low


@pytest.mark.parametrize(
    "name,hp,param",
    [
        ("lowrank_light", {"rank": 0}, "rank"),
        ("lowrank_light", {"rank": 21}, "rank"),
        ("lowrank_light", {}, "rank"),
        ("lowrank_light", {"rank": 2.5}, "rank"),
    ],
)
def test_bad_hparams_raise_named_valueerror(name, hp, param):
    with pytest.raises(ValueError, match=param):
        mbs.build(name, 30, 20, **hp)
