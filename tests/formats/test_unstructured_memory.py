"""A fresh unstructured layer draws its support in O(nnz) memory (no dense out x in score tensor)."""
import pytest
import torch

import mbs_layers as mbs
from mbs_layers.sparse_support import random_subset


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


@pytest.mark.parametrize("total, k", [(10, 0), (10, 10), (1000, 1), (1000, 600), (5000, 37)])
def test_random_subset_is_k_distinct_sorted_indices(total, k):
    flat = random_subset(total, k)
    assert flat.numel() == k and flat.unique().numel() == k
    assert k == 0 or (0 <= int(flat.min()) and int(flat.max()) < total and bool((flat[1:] > flat[:-1]).all()))


def test_random_subset_is_uniform():
    torch.manual_seed(0)
    counts = torch.zeros(20)
    for _ in range(2000):
        counts[random_subset(20, 5)] += 1
    expected = 2000 * 5 / 20
    assert float((counts - expected).abs().max()) < 0.15 * expected  # ~5 sigma for a binomial(2000, 1/4)
