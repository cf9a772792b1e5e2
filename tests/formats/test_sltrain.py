"""SLTrain (low rank + fixed sparse support): counts, storage, projection optimality, named errors."""

import pytest
import torch
from projection_helpers import rel_err

import mbs_layers as mbs
from mbs_layers.formats.sltrain import INDEX_BYTES, random_support, support_size


@pytest.mark.parametrize("name,hp", [("sltrain", {"rank": 3, "density": 0.1})])
@pytest.mark.parametrize("in_f,out_f", [(40, 24), (24, 40), (33, 33)])
def test_param_count_is_numel_of_stored_values(name, hp, in_f, out_f):
    layer = mbs.build(name, in_f, out_f, bias=False, **hp)
    assert layer.param_count() == sum(p.numel() for p in layer.parameters())


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


@pytest.mark.parametrize(
    "name,hp,param",
    [
        ("sltrain", {"rank": 21, "density": 0.1}, "rank"),
        ("sltrain", {"rank": 2, "density": 0.0}, "density"),
        ("sltrain", {"rank": 2, "density": 1.5}, "density"),
        ("sltrain", {"rank": 2, "density": 1e-4}, "density"),  # rounds to no nonzero
        ("sltrain", {"rank": 2, "density": 0.1, "seed": -1}, "seed"),
        ("sltrain", {"density": 0.1}, "rank"),
    ],
)
def test_bad_hparams_raise_named_valueerror(name, hp, param):
    with pytest.raises(ValueError, match=param):
        mbs.build(name, 30, 20, **hp)
