"""Constant fan-in sparsity (``fanin``): equal row lengths, optimal projections, counts, errors."""

import pytest
import torch

import mbs_layers as mbs
from mbs_layers.formats._calibration import hessian_diag


@pytest.mark.parametrize("out_f,in_f,k", [(9, 20, 3), (20, 9, 1), (5, 7, 7)])
def test_projection_keeps_the_k_largest_of_every_row(rng, out_f, in_f, k):
    w = torch.randn(out_f, in_f, dtype=torch.float64, generator=rng)
    approx = mbs.approximate("fanin", w, fan_in=k).dense_weight()
    assert bool(((approx != 0).sum(1) == k).all())
    dropped = w.pow(2).sort(1).values[:, : in_f - k].sum().sqrt()
    torch.testing.assert_close(torch.linalg.norm(approx - w), dropped)
    assert bool(((mbs.build("fanin", in_f, out_f, fan_in=k).dense_weight() != 0).sum(1) == k).all())


def test_calibrated_projection_is_optimal_for_the_diagonal_proxy(rng):
    w = torch.randn(8, 12, dtype=torch.float64, generator=rng)
    X = torch.randn(40, 12, dtype=torch.float64, generator=rng) * torch.linspace(0.1, 2, 12, dtype=torch.float64)
    approx = mbs.approximate("fanin", w, X=X, fan_in=4).dense_weight()
    scores = w.pow(2) * hessian_diag(X)
    torch.testing.assert_close(((w - approx).pow(2) * hessian_diag(X)).sum(), scores.sort(1).values[:, :8].sum())
    plain = mbs.approximate("fanin", w, fan_in=4).dense_weight()
    assert ((w - approx).pow(2) * hessian_diag(X)).sum() <= ((w - plain).pow(2) * hessian_diag(X)).sum()


def test_counts_storage_flops_and_budget():
    layer = mbs.build("fanin", 30, 6, fan_in=4, dtype=torch.float16)
    assert layer.param_count() == 24
    assert layer.storage_bytes() == 24 * 2 + 24 * 4
    assert layer.forward_flops(3) == 2 * 24 * 3
    assert mbs.FORMATS["fanin"].hparams_for_budget(30, 6, 29) == {"fan_in": 4}


@pytest.mark.parametrize(
    "fan_in,message",
    [
        (None, "fan_in is required"),
        (0, "fan_in=0 is out of range"),
        (31, "fan_in <= 30"),
        (2.0, "fan_in must be an integer"),
    ],
)
def test_bad_fan_in_raises_named_error(fan_in, message):
    with pytest.raises(ValueError, match=message):
        mbs.build("fanin", 30, 6, **({} if fan_in is None else {"fan_in": fan_in}))
