"""DSFormer: W ≈ D S (S 2:4); the alternating fit never raises its objective and uses X."""

from itertools import pairwise

import pytest
import torch

import mbs_layers as mbs
from mbs_layers.formats.dsformer import fit_dsformer


def test_fit_is_monotone_and_improves_on_its_start(rng):
    w = torch.randn(48, 64, dtype=torch.float64, generator=rng)
    D, S, mask, losses = fit_dsformer(w, 20, iterations=10)
    assert all(b <= a * (1 + 1e-12) for a, b in pairwise(losses))
    assert losses[-1] < 0.9 * losses[0]
    assert mask.reshape(20, 16, 4).sum(-1).eq(2).all() and (S[~mask] == 0).all()
    assert ((w - D @ S).pow(2).sum().item()) == pytest.approx(losses[-1], rel=1e-9)


def test_calibration_lowers_the_output_error(rng):
    w = torch.randn(32, 64, dtype=torch.float64, generator=rng)
    mix = torch.randn(64, 64, dtype=torch.float64, generator=rng) * torch.logspace(-2, 1, 64, dtype=torch.float64)
    x = torch.randn(400, 64, dtype=torch.float64, generator=rng) @ mix
    aware = mbs.approximate("dsformer", w, X=x, rank=16)
    plain = mbs.approximate("dsformer", w, rank=16)

    def output_error(layer):
        return (x @ (w - layer.dense_weight().detach()).T).norm()

    assert output_error(aware) < 0.8 * output_error(plain)


def test_counts_are_exact():
    layer = mbs.build("dsformer", 64, 48, rank=12, dtype=torch.float32)
    stored = sum(p.numel() for n, p in layer.named_parameters() if n != "bias")
    assert layer.param_count() == stored == 48 * 12 + 12 * 64 // 2
    assert layer.storage_bytes() == 4 * stored + (12 * 64 // 2) * 2 // 8  # + 2-bit 2:4 metadata
    assert layer.forward_flops(3) == 2 * 3 * stored


@pytest.mark.parametrize(
    "in_f,out_f,hp,message",
    [
        (30, 32, {"rank": 4}, "in_features=30 must be divisible by 4"),
        (32, 16, {"rank": 17}, "rank=17 is out of range"),
        (32, 16, {}, "rank is required"),
    ],
)
def test_bad_hparams_raise_named_errors(in_f, out_f, hp, message):
    with pytest.raises(ValueError, match=message):
        mbs.build("dsformer", in_f, out_f, **hp)
