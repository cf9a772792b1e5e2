"""Unstructured sparsity: optimal projection, counts, CSR storage, named errors; a fresh layer
draws its support in O(nnz) memory (no dense out x in score tensor)."""

import pytest
import torch
from sparse_helpers import check_reference_runs_in, dropped_norm

import mbs_layers as mbs


@pytest.mark.parametrize("out_f,in_f,density", [(24, 40, 0.3), (17, 9, 0.05), (8, 8, 1.0)])
def test_unstructured_projection_error_is_the_dropped_magnitudes(rng, out_f, in_f, density):
    w = torch.randn(out_f, in_f, dtype=torch.float64, generator=rng)
    layer = mbs.approximate("unstructured", w, density=density)
    nnz = max(1, round(density * out_f * in_f))
    assert layer.param_count() == nnz == int((layer.dense_weight() != 0).sum())
    err = torch.linalg.norm(layer.dense_weight() - w)
    torch.testing.assert_close(err, dropped_norm(w.flatten() ** 2, nnz))


def test_unstructured_counts_rounding_and_csr_storage():
    layer = mbs.build("unstructured", 10, 5, density=0.25, dtype=torch.float16)  # 12.5 -> 12 (half to even)
    assert layer.param_count() == 12
    assert layer.storage_bytes() == 12 * 2 + 4 * 12 + 4 * (5 + 1)
    assert mbs.build("unstructured", 10, 5, density=1e-6).param_count() == 1
    assert layer.forward_flops(7) == 2 * 12 * 7


@pytest.mark.parametrize("density", [0.0, -0.1, 1.5, float("nan"), None, "0.5"])
def test_unstructured_bad_density_raises_named_error(density):
    with pytest.raises(ValueError, match="density"):
        mbs.build("unstructured", 8, 8, density=density)


@pytest.mark.parametrize("name,hp", [("unstructured", {"density": 0.3})])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_reference_runs_in_every_float_dtype(rng, name, hp, dtype):
    check_reference_runs_in(rng, name, hp, dtype)


def test_build_allocates_no_dense_score_tensor(monkeypatch):
    n_in, n_out = 4096, 2048
    real_rand = torch.rand

    def guarded_rand(*size, **kwargs):
        shape = size[0] if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)) else size
        assert torch.Size(shape).numel() < n_in * n_out, "dense score tensor allocated"
        return real_rand(*size, **kwargs)

    monkeypatch.setattr(torch, "rand", guarded_rand)
    layer = mbs.build("unstructured", n_in, n_out, density=0.001, bias=False)
    flat = layer.rows * n_in + layer.cols
    assert flat.numel() == layer.nnz() == layer.param_count()
    assert flat.unique().numel() == flat.numel() and bool((flat[1:] > flat[:-1]).all())
