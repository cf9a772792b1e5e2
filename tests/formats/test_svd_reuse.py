"""One SVD of a matrix serves every rank and every SVD-based format (lowrank.full_svd)."""

import torch

import mbs_layers as mbs
from mbs_layers.formats import lowrank


def test_equal_matrices_share_one_svd_and_changed_ones_do_not():
    w = torch.randn(40, 30, dtype=torch.float64)
    first = lowrank.full_svd(w)
    assert lowrank.full_svd(w.clone()) is first  # same content, another tensor
    w[0, 0] += 1.0
    assert lowrank.full_svd(w) is not first


def test_reuse_gives_the_same_projections_as_fresh_svds(monkeypatch):
    w = torch.randn(48, 64, generator=torch.Generator().manual_seed(1))
    fits = {}
    for entries in (0, 2):
        monkeypatch.setattr(lowrank, "SVD_CACHE_ENTRIES", entries)
        lowrank._svd_cache.clear()
        fits[entries] = [
            mbs.approximate(name, w, rank=r, bias=None).dense_weight()
            for name in ("lowrank", "lowrank_light", "sltrain")
            for r in (3, 9)
        ]
    for fresh, reused in zip(fits[0], fits[2]):
        assert torch.equal(fresh, reused)
