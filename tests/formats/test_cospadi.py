"""CoSpaDi: sparse-dictionary fit by calibration-guided K-SVD."""

import pytest
import torch

import mbs_layers as mbs
from mbs_layers.formats.cospadi import fit_cospadi, omp, refit_codes


def union_of_subspaces(rng, n_in, n_out, subspaces, dim):
    """(n_out, n_in) W whose rows (the paper's columns of Wᵀ) each lie in one of ``subspaces``
    random ``dim``-dimensional subspaces of the input space."""
    bases = torch.randn(subspaces, n_in, dim, dtype=torch.float64, generator=rng)
    which = torch.randint(subspaces, (n_out,), generator=rng)
    coef = torch.randn(n_out, dim, 1, dtype=torch.float64, generator=rng)
    return (bases[which] @ coef).squeeze(-1)


def test_beats_lowrank_at_equal_params_on_a_union_of_subspaces(rng):
    w = union_of_subspaces(rng, 128, 256, subspaces=8, dim=4)
    cospadi = mbs.approximate("cospadi", w, atoms=32, sparsity=4)
    budget = mbs.FORMATS["lowrank"].hparams_for_budget(128, 256, cospadi.param_count())
    lowrank = mbs.approximate("lowrank", w, **budget)
    assert lowrank.param_count() <= cospadi.param_count()
    err = {
        name: ((w - layer.dense_weight()).norm() / w.norm()).item()
        for name, layer in (("cospadi", cospadi), ("lowrank", lowrank))
    }
    assert err["cospadi"] < 0.5 * err["lowrank"], err


def test_calibration_lowers_the_output_error(rng):
    w = torch.randn(48, 64, dtype=torch.float64, generator=rng)
    mix = torch.randn(64, 64, dtype=torch.float64, generator=rng) * torch.logspace(-2, 1, 64, dtype=torch.float64)
    x = torch.randn(400, 64, dtype=torch.float64, generator=rng) @ mix
    aware = mbs.approximate("cospadi", w, X=x, atoms=16, sparsity=4)
    plain = mbs.approximate("cospadi", w, atoms=16, sparsity=4)

    def output_error(layer):
        return (x @ (w - layer.dense_weight().detach()).T).norm()

    assert output_error(aware) < 0.8 * output_error(plain)


def test_omp_recovers_sparse_codes_over_an_orthonormal_dictionary(rng):
    q, _ = torch.linalg.qr(torch.randn(20, 20, dtype=torch.float64, generator=rng))
    support = torch.rand(20, 30, generator=rng).argsort(0)[:3]
    values = 1 + torch.rand(3, 30, dtype=torch.float64, generator=rng)
    codes = torch.zeros(20, 30, dtype=torch.float64).scatter(0, support, values)
    index, coef = omp(q, q @ codes, 3)
    rebuilt = torch.zeros(20, 30, dtype=torch.float64).scatter(0, index, coef)
    torch.testing.assert_close(rebuilt, codes)


def test_every_output_keeps_sparsity_distinct_atoms(rng):
    layer = mbs.approximate("cospadi", torch.randn(40, 24, generator=rng), atoms=10, sparsity=3)
    index = layer.code_index
    assert index.shape == (40, 3) and index.dtype == torch.int32
    assert (index.sort(1).values.diff(dim=1) > 0).all() and index.max() < 10


def test_counts_are_exact():
    layer = mbs.build("cospadi", 64, 48, atoms=12, sparsity=3, dtype=torch.float16)
    stored = sum(p.numel() for n, p in layer.named_parameters() if n != "bias")
    assert layer.param_count() == stored == 12 * 64 + 3 * 48
    assert layer.storage_bytes() == 2 * stored + 4 * 3 * 48  # + an int32 index per code
    assert layer.forward_flops(5) == 2 * 5 * stored
    assert layer.hparams == {"atoms": 12, "sparsity": 3}
    assert mbs.build("cospadi", 64, 48, atoms=12).hparams["sparsity"] == 3  # atoms // 4


@pytest.mark.parametrize(
    "hp,message",
    [
        ({"atoms": 8, "sparsity": 9}, "sparsity=9 is out of range"),
        ({"atoms": 49}, "atoms=49 is out of range"),
        ({"sparsity": 2}, "atoms is required"),
    ],
)
def test_bad_hparams_raise_named_errors(hp, message):
    with pytest.raises(ValueError, match=message):
        mbs.build("cospadi", 64, 48, **hp)


def test_fit_without_rounds_raises_a_named_error():
    """K-SVD keeps its best round, so there must be one."""
    with pytest.raises(ValueError, match="iterations=0 is out of range"):
        fit_cospadi(torch.randn(16, 8), atoms=4, sparsity=2, iterations=0)


def omp_reference(D, y, s):
    """Textbook OMP of one column: pick the atom most correlated with the residual, refit every
    chosen atom's coefficient by least squares, repeat."""
    chosen: list[int] = []
    coef = torch.zeros(0, dtype=D.dtype)
    residual = y
    for _ in range(s):
        corr = (D.T @ residual).abs()
        corr[chosen] = -1.0
        chosen.append(int(corr.argmax()))
        coef = torch.linalg.lstsq(D[:, chosen], y[:, None]).solution[:, 0]
        residual = y - D[:, chosen] @ coef
    return torch.tensor(chosen), coef


@pytest.mark.parametrize("n,k,s", [(12, 30, 5), (24, 16, 16), (40, 20, 1)])
def test_batched_omp_equals_per_column_omp(rng, n, k, s):
    """Batch-OMP's Cholesky updates pick the same atoms with the same coefficients as the
    textbook per-column loop, overcomplete (k > n) and square-support (s = k) cases included."""
    D = torch.randn(n, k, dtype=torch.float64, generator=rng)
    D = D / D.norm(dim=0)
    Y = torch.randn(n, 25, dtype=torch.float64, generator=rng)
    index, coef = omp(D, Y, s)
    for col in range(Y.shape[1]):
        ref_index, ref_coef = omp_reference(D, Y[:, col], s)
        assert index[:, col].tolist() == ref_index.tolist()
        torch.testing.assert_close(coef[:, col], ref_coef)


def test_refit_codes_are_the_least_squares_codes_on_the_support(rng):
    """K-SVD picks atoms with a float32 pursuit and refits the codes in float64 on that support."""
    D = torch.randn(30, 50, dtype=torch.float64, generator=rng)
    D = D / D.norm(dim=0)
    Y = torch.randn(30, 20, dtype=torch.float64, generator=rng)
    index = omp(D.float(), Y.float(), 6)[0]
    coef = refit_codes(D, Y, index)
    assert coef.dtype == torch.float64
    for col in range(Y.shape[1]):
        ref = torch.linalg.lstsq(D[:, index[:, col]], Y[:, col : col + 1]).solution[:, 0]
        torch.testing.assert_close(coef[:, col], ref)
