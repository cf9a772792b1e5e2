"""Low-Rank Light and SLTrain: counts, storage, projection optimality, named errors."""
import pytest
import torch

import mbs_layers as mbs
from mbs_layers.formats.lowrank_light import ridge_strength
from mbs_layers.formats.sltrain import INDEX_BYTES, random_support, support_size


def rel_err(layer, w):
    return (torch.linalg.norm(layer.dense_weight() - w) / torch.linalg.norm(w)).item()


def svd_tail(w, rank):
    return torch.linalg.svdvals(w)[rank:].norm() / torch.linalg.norm(w)


@pytest.mark.parametrize("name,hp", [("lowrank_light", {"rank": 7}), ("sltrain", {"rank": 3, "density": 0.1})])
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
    q = torch.linalg.qr(torch.eye(n, dtype=torch.float64) + 0.2 * torch.randn(n, n, generator=rng,
                                                                              dtype=torch.float64))[0]
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


def test_sltrain_support_is_deterministic_and_seeded():
    a = random_support(30, 20, 50, seed=3)
    b = random_support(30, 20, 50, seed=3)
    c = random_support(30, 20, 50, seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[1], c[1])
    crow, col = a
    assert crow[-1] == 50 and crow.dtype == col.dtype == torch.int32
    flat = torch.repeat_interleave(torch.arange(20), (crow[1:] - crow[:-1]).long()) * 30 + col.long()
    assert flat.unique().numel() == 50  # distinct positions


def test_sltrain_params_and_storage_bytes_formula():
    layer = mbs.build("sltrain", 64, 48, rank=5, density=0.1, dtype=torch.float16)
    nnz = support_size(64, 48, 0.1)
    assert nnz == 307 and layer.nnz == nnz
    assert layer.param_count() == 5 * (64 + 48) + nnz
    assert layer.storage_bytes() == 2 * layer.param_count() + INDEX_BYTES * (48 + 1 + nnz)


def test_sltrain_sparse_part_lies_on_the_support(rng):
    layer = mbs.build("sltrain", 40, 30, rank=2, density=0.2, dtype=torch.float64)
    s = layer.sparse_weight()
    assert (s != 0).sum() == layer.nnz
    x = torch.randn(5, 40, generator=rng, dtype=torch.float64)
    torch.testing.assert_close(layer.sparse_product(x), x @ s.T)


def test_sltrain_projection_is_optimal_sparse_part_given_low_rank(rng):
    w = torch.randn(40, 50, generator=rng, dtype=torch.float64)
    layer = mbs.approximate("sltrain", w, rank=4, density=0.1)
    residual = w - layer.U @ layer.V
    s = layer.sparse_weight()
    torch.testing.assert_close(s[s != 0], residual[s != 0])  # exact on the support
    lowrank_err = rel_err(mbs.approximate("lowrank", w, rank=4), w)
    assert rel_err(layer, w) < lowrank_err  # the sparse part only adds


def test_sltrain_projection_recovers_a_denser_matrix_in_the_format():
    layer = mbs.build("sltrain", 60, 50, rank=6, density=0.3, seed=7, dtype=torch.float64)
    w = layer.dense_weight().detach()
    assert rel_err(mbs.approximate("sltrain", w, rank=6, density=0.3, seed=7), w) < 1e-9


@pytest.mark.parametrize("name,hp,param", [
    ("lowrank_light", {"rank": 0}, "rank"),
    ("lowrank_light", {"rank": 21}, "rank"),
    ("lowrank_light", {}, "rank"),
    ("lowrank_light", {"rank": 2.5}, "rank"),
    ("sltrain", {"rank": 21, "density": 0.1}, "rank"),
    ("sltrain", {"rank": 2, "density": 0.0}, "density"),
    ("sltrain", {"rank": 2, "density": 1.5}, "density"),
    ("sltrain", {"rank": 2, "density": 1e-4}, "density"),  # rounds to no nonzero
    ("sltrain", {"rank": 2, "density": 0.1, "seed": -1}, "seed"),
    ("sltrain", {"density": 0.1}, "rank"),
])
def test_bad_hparams_raise_named_valueerror(name, hp, param):
    with pytest.raises(ValueError, match=param):
        mbs.build(name, 30, 20, **hp)
