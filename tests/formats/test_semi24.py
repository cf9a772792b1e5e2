"""2:4 sparsity (semi24): optimal projection, counts, storage and FLOP formulas, named errors."""

import pytest
import torch
from sparse_helpers import check_reference_runs_in, dropped_norm

import mbs_layers as mbs


@pytest.mark.parametrize("out_f,in_f", [(12, 16), (5, 36)])
def test_semi24_projection_keeps_two_largest_of_each_four(rng, out_f, in_f):
    w = torch.randn(out_f, in_f, dtype=torch.float64, generator=rng)
    layer = mbs.approximate("semi24", w)
    kept = layer.dense_weight().reshape(out_f, in_f // 4, 4)
    assert bool(((kept != 0).sum(-1) == 2).all())
    err = torch.linalg.norm(layer.dense_weight() - w)
    torch.testing.assert_close(err, dropped_norm(w.reshape(out_f, -1, 4) ** 2, 2))


def test_semi24_counts_storage_and_flops():
    layer = mbs.build("semi24", 32, 8, dtype=torch.bfloat16)
    assert layer.param_count() == 128
    assert layer.storage_bytes() == 128 * 2 + 128 * 2 // 8  # values + 2 metadata bits per value
    assert layer.forward_flops(3) == 2 * 128 * 3
    assert layer.dense_equivalent_flops(3) == 2 * 32 * 8 * 3
    fresh = layer.dense_weight().reshape(8, 8, 4)
    assert bool(((fresh != 0).sum(-1) == 2).all())


def test_semi24_in_features_not_multiple_of_four_raises():
    with pytest.raises(ValueError, match="in_features=10"):
        mbs.build("semi24", 10, 8)
    with pytest.raises(ValueError, match="in_features"):
        mbs.FORMATS["semi24"].hparams_for_budget(10, 8, 40)


@pytest.mark.parametrize("name,hp", [("semi24", {})])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_reference_runs_in_every_float_dtype(rng, name, hp, dtype):
    check_reference_runs_in(rng, name, hp, dtype)
