"""``sparse_support.random_subset``: k distinct sorted indices, uniformly drawn (what a fresh
unstructured layer draws its support with)."""

import pytest
import torch

from mbs_layers.sparse_support import random_subset


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
