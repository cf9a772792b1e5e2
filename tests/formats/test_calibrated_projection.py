"""Calibration-aware projection: the ``X=`` API, its validation, and optimality of the methods."""

import pytest
import torch

import mbs_layers as mbs
from mbs_layers.formats._calibration import gram, hessian_diag, whitening


def correlated(tokens, n, rng):
    """Activations with a strongly non-isotropic covariance (decaying spectrum, random basis)."""
    basis = torch.linalg.qr(torch.randn(n, n, generator=rng, dtype=torch.float64))[0]
    scales = torch.logspace(0, -2, n, dtype=torch.float64)
    return torch.randn(tokens, n, generator=rng, dtype=torch.float64) @ (scales[:, None] * basis)


def output_error(w, w_hat, X):
    return torch.linalg.norm((w - w_hat) @ X.T).item()


def proxy_error(w, w_hat, X):
    """Σ_ij H_jj (W − Ŵ)_ij² with H = diag(XᵀX)/tokens."""
    return ((w - w_hat).pow(2) * hessian_diag(X)).sum().item()


# ----- the API --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad,message",
    [
        (torch.randn(10), "X must be a 2-D"),
        (torch.randn(10, 7), r"in_features=8"),
        (torch.ones(10, 8, dtype=torch.int64), "X must be a floating"),
        (torch.full((10, 8), float("nan")), "X must be finite"),
        ([[1.0] * 8], "X must be a 2-D"),
    ],
)
def test_bad_activations_raise_named_error(bad, message):
    with pytest.raises(ValueError, match=message):
        mbs.approximate("lowrank", torch.randn(6, 8), X=bad, rank=2)


def test_format_without_data_aware_method_warns_and_ignores_x(rng):
    w, X = torch.randn(16, 16, generator=rng), torch.randn(40, 16, generator=rng)
    assert not mbs.FORMATS["monarch"].data_aware
    with pytest.warns(UserWarning, match="format monarch has no data-aware projection; X is ignored"):
        with_x = mbs.approximate("monarch", w, X=X, nblocks=4)
    torch.testing.assert_close(with_x.dense_weight(), mbs.approximate("monarch", w, nblocks=4).dense_weight())


@pytest.mark.parametrize("name", ["lowrank", "lowrank_light", "unstructured", "semi24", "blocksparse"])
def test_data_aware_formats_use_x_without_warning(name, rng, recwarn):
    # Columns 0, 1, 4, 5, ..., 13 of W are 4x larger but see 16x weaker inputs: magnitude keeps
    # them, the output error wants the others (in every group of 4 and in the first 16-wide tile).
    loud = torch.tensor([c < 16 and c % 4 < 2 for c in range(32)])
    w = torch.randn(16, 32, generator=rng) * torch.where(loud, 4.0, 1.0)
    X = torch.randn(64, 32, generator=rng) * torch.where(loud, 1 / 16, 1.0)
    hp = mbs.FORMATS[name].hparams_for_budget(32, 16, 256)
    plain, aware = mbs.approximate(name, w, **hp), mbs.approximate(name, w, X=X, **hp)
    assert mbs.FORMATS[name].data_aware and not recwarn.list
    assert not torch.equal(plain.dense_weight(), aware.dense_weight())
    assert aware.dense_weight().dtype == torch.float32


def test_calibration_statistics(rng):
    X = torch.randn(30, 6, generator=rng, dtype=torch.float64)
    g = X.T @ X / 30
    torch.testing.assert_close(gram(X), g)
    torch.testing.assert_close(hessian_diag(X), g.diagonal())
    lu = whitening(X)
    assert torch.equal(lu, lu.triu())
    torch.testing.assert_close(lu.T @ lu, g, rtol=1e-5, atol=1e-5)


# ----- low rank -------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["lowrank", "lowrank_light"])
@pytest.mark.parametrize("out_f,in_f,rank", [(24, 40, 5), (40, 24, 8)])
def test_calibrated_low_rank_reaches_the_optimum_and_beats_svd(name, out_f, in_f, rank, rng):
    w, X = torch.randn(out_f, in_f, generator=rng, dtype=torch.float64), correlated(200, in_f, rng)
    # Eckart–Young on W Xᵀ: with X of full column rank every rank-r matrix with rows in X's
    # column space is some Ŵ Xᵀ, so the optimum is the tail of W Xᵀ's singular values.
    optimum = torch.linalg.svdvals(w @ X.T)[rank:].pow(2).sum().sqrt().item()
    aware = mbs.approximate(name, w, X=X, rank=rank).dense_weight()
    plain = mbs.approximate(name, w, rank=rank).dense_weight()
    assert output_error(w, aware, X) == pytest.approx(optimum, rel=1e-4)
    assert output_error(w, aware, X) < 0.9 * output_error(w, plain, X)
    # rank at float64 round-off: Low-Rank Light's U[I | V] re-expression leaves ~1e-14·σ₁ of
    # cancellation noise in the other singular values, just above matrix_rank's default cut
    assert torch.linalg.matrix_rank(aware, rtol=1e-10) == rank


def test_calibrated_low_rank_survives_rank_deficient_activations(rng):
    w, X = torch.randn(20, 32, generator=rng), torch.randn(5, 32, generator=rng)  # 5 tokens < 32 inputs
    aware = mbs.approximate("lowrank", w, X=X, rank=4).dense_weight()
    assert torch.isfinite(aware).all()
    optimum = torch.linalg.svdvals(w.double() @ X.double().T)[4:].pow(2).sum().sqrt().item()
    assert output_error(w.double(), aware.double(), X.double()) == pytest.approx(optimum, rel=1e-3, abs=1e-3)


# ----- sparse ---------------------------------------------------------------------------
def dropped_scores(w, X, groups):
    """The optimal diagonal-proxy error: per group, the sum of the smallest W²H scores dropped."""
    return sum(s.sort().values[:drop].sum().item() for s, drop in groups(w.pow(2) * hessian_diag(X)))


@pytest.mark.parametrize(
    "name,hp,groups",
    [
        ("unstructured", {"density": 0.3}, lambda s: [(s.flatten(), s.numel() - round(0.3 * s.numel()))]),
        ("semi24", {}, lambda s: [(g, 2) for g in s.reshape(-1, 4)]),
        ("blocksparse", {"block": 4, "density": 0.5}, lambda s: [(s.reshape(6, 4, 8, 4).sum((1, 3)).flatten(), 24)]),
    ],
)
def test_weighted_magnitude_is_optimal_for_the_diagonal_proxy(name, hp, groups, rng):
    w, X = torch.randn(24, 32, generator=rng, dtype=torch.float64), correlated(100, 32, rng)
    aware = mbs.approximate(name, w, X=X, **hp).dense_weight()
    plain = mbs.approximate(name, w, **hp).dense_weight()
    assert proxy_error(w, aware, X) == pytest.approx(dropped_scores(w, X, groups), rel=1e-9)
    assert proxy_error(w, aware, X) <= proxy_error(w, plain, X) + 1e-12
    kept = aware != 0
    torch.testing.assert_close(aware[kept], w[kept])  # kept values are W's own
