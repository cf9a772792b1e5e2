"""General N:M sparsity (``nm``): exact patterns, optimal projections, counts and named errors."""

import math

import pytest
import torch

import mbs_layers as mbs
from mbs_layers.formats._calibration import hessian_diag

PATTERNS = [(1, 2), (1, 4), (2, 8), (4, 8), (3, 16), (15, 16)]


@pytest.mark.parametrize("n,m", PATTERNS)
def test_projection_keeps_exactly_n_largest_of_every_m(rng, n, m):
    w = torch.randn(7, 4 * m, dtype=torch.float64, generator=rng)
    layer = mbs.approximate("nm", w, n=n, m=m)
    groups, approx = w.reshape(7, 4, m), layer.dense_weight().reshape(7, 4, m)
    assert bool(((approx != 0).sum(-1) == n).all())
    assert torch.equal(approx != 0, groups.abs() >= groups.abs().topk(n, -1).values[..., -1:])
    dropped = groups.pow(2).sort(-1).values[..., : m - n].sum().sqrt()
    torch.testing.assert_close(torch.linalg.norm(layer.dense_weight() - w), dropped)


@pytest.mark.parametrize("n,m", PATTERNS)
def test_fresh_layer_holds_the_pattern(n, m):
    layer = mbs.build("nm", 3 * m, 5, n=n, m=m)
    assert bool(((layer.dense_weight().reshape(5, 3, m) != 0).sum(-1) == n).all())


def test_calibrated_projection_is_optimal_for_the_diagonal_proxy(rng):
    w = torch.randn(6, 16, dtype=torch.float64, generator=rng)
    X = torch.randn(50, 16, dtype=torch.float64, generator=rng) * torch.linspace(0.1, 3, 16, dtype=torch.float64)
    approx = mbs.approximate("nm", w, X=X, n=2, m=8).dense_weight()
    scores = (w.pow(2) * hessian_diag(X)).reshape(6, 2, 8)
    optimum = scores.sort(-1).values[..., :6].sum()
    torch.testing.assert_close(((w - approx).pow(2) * hessian_diag(X)).sum(), optimum)


@pytest.mark.parametrize("n,m,dtype", [(2, 4, torch.float16), (1, 8, torch.float32), (15, 16, torch.bfloat16)])
def test_counts_storage_and_flops(n, m, dtype):
    layer = mbs.build("nm", 4 * m, 6, n=n, m=m, dtype=dtype)
    nnz = 6 * 4 * n
    assert layer.param_count() == nnz == mbs.FORMATS["nm"].count_params(4 * m, 6, n=n, m=m)
    bits = math.ceil(math.log2(m))
    assert layer.storage_bytes() == nnz * dtype.itemsize + math.ceil(nnz * bits / 8)
    assert layer.forward_flops(5) == 2 * nnz * 5


def test_two_four_matches_semi24(rng):
    w = torch.randn(8, 16, generator=rng)
    a, b = mbs.approximate("nm", w, n=2, m=4), mbs.approximate("semi24", w)
    assert torch.equal(a.dense_weight(), b.dense_weight())
    assert a.storage_bytes() == b.storage_bytes()


def test_budget_picks_the_largest_fitting_ratio():
    nm = mbs.FORMATS["nm"]
    assert nm.hparams_for_budget(64, 32, 64 * 32 * 3 // 8) == {"n": 3, "m": 8}
    assert nm.hparams_for_budget(64, 32, 64 * 32 // 2) == {"n": 2, "m": 4}  # 2:4 before 1:2, 4:8, 8:16
    assert nm.hparams_for_budget(64, 32, 64 * 32 // 4 + 5) == {"n": 1, "m": 4}
    assert nm.hparams_for_budget(64, 32, 64 * 32 // 16) == {"n": 1, "m": 16}
    assert mbs.FORMATS["nm"].hparams_for_budget(12, 4, 40) == {"n": 3, "m": 4}  # 12 is not a multiple of 8


@pytest.mark.parametrize(
    "hp,message",
    [
        ({"n": 1, "m": 3}, r"m=3 is not supported: allowed \[2, 4, 8, 16\]"),
        ({"n": 4, "m": 4}, r"n=4 is out of range: allowed 1 <= n <= 3"),
        ({"n": 0, "m": 8}, "n=0 is out of range"),
        ({"n": 1.5, "m": 8}, "n must be an integer"),
        ({"m": 8}, "n and m are required"),
        ({"n": 1, "m": 32}, "m=32 is not supported"),
        ({"n": 1, "m": 16, "in_f": 24}, "in_features=24 must be divisible by 16"),
    ],
)
def test_bad_hyper_parameters_raise_named_error(hp, message):
    in_f = hp.pop("in_f", 32)
    with pytest.raises(ValueError, match=message):
        mbs.build("nm", in_f, 8, **hp)
