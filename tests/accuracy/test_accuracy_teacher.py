"""The generated pre-training task: deterministic, balanced, labels a function of the image."""

import torch
from torch.nn import functional as F

from mbs_layers.accuracy.images import teacher


def test_teacher_task_is_reproducible_balanced_and_labelled_with_a_margin():
    ds = teacher(size=4, classes=3, width=8, margin=0.5, train=300, test=100, seed=5)
    again = teacher(size=4, classes=3, width=8, margin=0.5, train=300, test=100, seed=5)
    assert torch.equal(ds.train_x, again.train_x) and torch.equal(ds.test_y, again.test_y)
    assert ds.train_x.shape == (300, 1, 4, 4) and ds.test_x.shape == (100, 1, 4, 4)
    counts = torch.bincount(ds.train_y, minlength=3)
    assert counts.min() > 0.5 * counts.max()  # per-class logit calibration: no dominant class
    # rebuild the teacher: every label is its calibrated argmax, ahead of the runner-up by the margin
    gen = torch.Generator().manual_seed(5)
    w1, w2 = torch.randn(16, 8, generator=gen) / 4, torch.randn(8, 3, generator=gen) / 8**0.5
    calibration = F.gelu(torch.randn(8192, 16, generator=gen) @ w1) @ w2
    logits = (F.gelu(ds.test_x.flatten(1) @ w1) @ w2 - calibration.mean(0)) / calibration.std(0)
    top = logits.topk(2, dim=-1).values
    assert torch.equal(logits.argmax(-1), ds.test_y) and bool((top[:, 0] - top[:, 1] >= 0.5).all())


def test_linear_teacher_labels_are_its_calibrated_argmax():
    ds = teacher(size=4, classes=3, width=None, margin=0.3, train=200, test=100, seed=2)
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(16, 3, generator=gen) / 4
    calibration = torch.randn(8192, 16, generator=gen) @ w
    logits = (ds.test_x.flatten(1) @ w - calibration.mean(0)) / calibration.std(0)
    assert torch.equal(logits.argmax(-1), ds.test_y)
    assert torch.bincount(ds.train_y, minlength=3).min() > 30
