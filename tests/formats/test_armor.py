"""ARMOR: the block-coordinate descent never raises the proxy loss and ends ≤ 2:4 pruning's."""

from itertools import pairwise

import pytest
import torch

import mbs_layers as mbs
from mbs_layers.formats import armor
from mbs_layers.formats._calibration import hessian_diag
from mbs_layers.formats._chain import keep_2_of_4
from mbs_layers.formats.armor import fit_armor, proxy_loss


def calibration(rng, tokens, width):
    """Activations with correlated features and column scales spread over two decades."""
    mix = torch.randn(width, width, dtype=torch.float64, generator=rng)
    scale = torch.logspace(-1, 1, width, dtype=torch.float64)
    return torch.randn(tokens, width, dtype=torch.float64, generator=rng) @ mix * scale


@pytest.mark.parametrize("with_x", [False, True])
@pytest.mark.parametrize("out_f,in_f,block", [(32, 64, 16), (48, 24, 8)])
def test_loss_never_increases_and_beats_magnitude_pruning(rng, with_x, out_f, in_f, block):
    w = torch.randn(out_f, in_f, dtype=torch.float64, generator=rng)
    h = hessian_diag(calibration(rng, 200, in_f)) if with_x else None
    fit = fit_armor(w, block, h, sweeps=6)
    assert all(b <= a for a, b in pairwise(fit.losses))
    magnitude = proxy_loss(w, w * keep_2_of_4(w.abs()), h)
    assert fit.losses[0] <= magnitude * (1 + 1e-12)  # the start: 2:4 pruning optimal for the proxy
    assert fit.losses[-1] < 0.95 * magnitude  # the wrappers and core updates help
    approx = torch.block_diag(*fit.A) @ fit.C @ torch.block_diag(*fit.B)
    assert proxy_loss(w, approx, h) == pytest.approx(fit.losses[-1], rel=1e-9)
    assert keep_2_of_4(fit.C.abs()).sum() == fit.C.numel() // 2 and (fit.C[~fit.mask] == 0).all()


def test_approximate_stores_the_fit_and_uses_x(rng, monkeypatch):
    monkeypatch.setattr(armor, "SWEEPS", 5)
    w = torch.randn(32, 64, dtype=torch.float64, generator=rng)
    x = calibration(rng, 300, 64)
    h = hessian_diag(x)
    layer = mbs.approximate("armor", w, X=x, block=16)
    fit = fit_armor(w, 16, h)
    assert proxy_loss(w, layer.dense_weight().detach(), h) == pytest.approx(fit.losses[-1], rel=1e-9)
    plain = mbs.approximate("armor", w, block=16)
    assert proxy_loss(w, layer.dense_weight().detach(), h) < proxy_loss(w, plain.dense_weight().detach(), h)


def test_counts_are_exact():
    layer = mbs.build("armor", 64, 32, block=16, dtype=torch.float16)
    stored = sum(p.numel() for n, p in layer.named_parameters() if n != "bias")
    assert layer.param_count() == stored == 64 * 32 // 2 + 16 * (64 + 32)
    assert layer.storage_bytes() == 2 * stored + (64 * 32 // 2) * 2 // 8  # + 2-bit 2:4 metadata
    assert layer.forward_flops(5) == 2 * 5 * (64 * 32 // 2 + 16 * (64 + 32))


def test_fresh_layer_is_a_2_of_4_matrix_in_identity_wrappers():
    layer = mbs.build("armor", 32, 32, block=8, dtype=torch.float64)
    w = layer.dense_weight().detach()
    assert (w.reshape(32, 8, 4) != 0).sum(-1).max() <= 2
    torch.testing.assert_close(w, layer.stages[1].dense_weight().detach())


@pytest.mark.parametrize(
    "in_f,out_f,hp,message",
    [
        (64, 48, {"block": 32}, "block=32 must divide out_features=48"),
        (48, 64, {}, "block=32 must divide in_features=48"),
        (30, 30, {"block": 2}, "in_features=30 must be divisible by 4"),
        (32, 32, {"block": 0}, "block=0 is out of range"),
    ],
)
def test_bad_hparams_raise_named_errors(in_f, out_f, hp, message):
    with pytest.raises(ValueError, match=message):
        mbs.build("armor", in_f, out_f, **hp)
