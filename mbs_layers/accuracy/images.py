"""Image classification data for pre-training: offline default plus user data sets.

* ``digits``: scikit-learn's 8×8 handwritten digits (1,797 images, 10 classes), shipped inside
  scikit-learn, so the smoke run needs no download; a fixed, stratified 75/25 split. It
  saturates (dense ~0.96): formats cannot be ranked on it.
* ``teacher``: a generated task of known difficulty (:func:`teacher`): Gaussian 8×8 images
  labelled by a fixed random dense network, keeping only images whose label wins by a margin.
* CIFAR-10 in its official python-pickle layout (``data_batch_1..5``, ``test_batch``).
* An image folder, ImageNet-style: ``PATH/train/<class>/*`` and ``PATH/val|test/<class>/*``.
Images come back as float tensors (N, C, H, W) normalised with the training set's channel
mean and std. A validation split (``VAL_FRACTION`` of each class of the training images, drawn
with a fixed seed) is held out for model selection, so the test split is used once.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".webp"}


VAL_FRACTION = 0.2


@dataclass
class ImageData:
    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    val_x: torch.Tensor | None = None
    val_y: torch.Tensor | None = None


def stratified_mask(y: torch.Tensor, fraction: float, seed: int = 0) -> torch.Tensor:
    """A boolean mask choosing ``floor(fraction · count)`` members of every class, drawn with ``seed``."""
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    chosen = torch.zeros(len(y), dtype=torch.bool)
    for c in y.unique():
        members = order[y[order] == c]
        chosen[members[: int(len(members) * fraction)]] = True
    return chosen


def hold_out_validation(ds: ImageData, fraction: float = VAL_FRACTION) -> ImageData:
    """``ds`` with ``fraction`` of each training class moved to the validation split."""
    val = stratified_mask(ds.train_y, fraction)
    ds.val_x, ds.val_y = ds.train_x[val], ds.train_y[val]
    ds.train_x, ds.train_y = ds.train_x[~val], ds.train_y[~val]
    return ds


def digits() -> ImageData:
    """scikit-learn's digits, split 75/25 per class with a fixed seed."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32)[:, None] / 16.0
    y = torch.tensor(bunch.target, dtype=torch.long)
    test = stratified_mask(y, 0.25)
    return ImageData("digits", x[~test], y[~test], x[test], y[test], [str(c) for c in range(10)])


# The generated task: ``TEACHER`` samples labelled by a random two-layer network (in -> width
# -> classes, GELU) on the raw pixels; the margin (in units of the logits' std) removes the
# near-ties, so every label is a deterministic function of the image (Bayes accuracy 1) and the
# difficulty is how much of that function a model can represent and learn from the samples.
TEACHER = {"size": 8, "classes": 4, "width": 16, "margin": 0.5, "train": 4000, "test": 1000}


@torch.no_grad()
def teacher(
    size: int = 8,
    classes: int = 10,
    width: int | None = None,
    margin: float = 0.25,
    train: int = 4000,
    test: int = 1000,
    seed: int = 0,
) -> ImageData:
    """``train`` + ``test`` Gaussian (1, size, size) images labelled by a fixed random teacher
    (linear, or with a GELU hidden layer of ``width``), each label's calibrated logit ahead of
    the runner-up by at least ``margin`` logit stds."""
    gen = torch.Generator().manual_seed(seed)
    pixels = size * size
    if width:
        w1 = torch.randn(pixels, width, generator=gen) / pixels**0.5
        w2 = torch.randn(width, classes, generator=gen) / width**0.5
        net = lambda x: F.gelu(x @ w1) @ w2
    else:  # linear teacher: classes are cones of the pixel space
        w = torch.randn(pixels, classes, generator=gen) / pixels**0.5
        net = lambda x: x @ w
    calibration = net(torch.randn(8192, pixels, generator=gen))
    mean, std = calibration.mean(0), calibration.std(0)  # per class: roughly balanced classes
    kept_x, kept_y, have = [], [], 0
    while have < train + test:
        x = torch.randn(4096, pixels, generator=gen)
        logits = (net(x) - mean) / std
        top = logits.topk(2, dim=-1).values
        keep = top[:, 0] - top[:, 1] >= margin
        kept_x.append(x[keep])
        kept_y.append(logits[keep].argmax(-1))
        have += int(keep.sum())
    x = torch.cat(kept_x)[: train + test].reshape(-1, 1, size, size)
    y = torch.cat(kept_y)[: train + test]
    return ImageData("teacher", x[:train], y[:train], x[train:], y[train:], [str(c) for c in range(classes)])


def _unpickle(path: Path) -> dict:
    with path.open("rb") as fh:
        return pickle.load(fh, encoding="bytes")


def cifar10(root: Path) -> ImageData:
    """CIFAR-10 from its python-pickle batches under ``root``."""

    def batches(files):
        parts = [_unpickle(root / f) for f in files]
        x = torch.cat([torch.as_tensor(p[b"data"]).reshape(-1, 3, 32, 32) for p in parts]).float() / 255.0
        y = torch.cat([torch.as_tensor(p[b"labels"], dtype=torch.long) for p in parts])
        return x, y

    train = sorted(p.name for p in root.glob("data_batch_*"))
    meta = root / "batches.meta"
    classes = [c.decode() for c in _unpickle(meta)[b"label_names"]] if meta.exists() else [str(c) for c in range(10)]
    return ImageData("cifar10", *batches(train), *batches(["test_batch"]), classes)


def image_folder(root: Path, size: int) -> ImageData:
    """``root/train/<class>/*`` and ``root/val`` (or ``test``)``/<class>/*``, resized to size×size RGB."""
    from PIL import Image

    test_dir = next((root / d for d in ("val", "test") if (root / d).is_dir()), None)
    if test_dir is None:
        raise ValueError(f"data={root} has train/ but neither val/ nor test/: allowed layout PATH/train|val/<class>/*")
    classes = sorted(d.name for d in (root / "train").iterdir() if d.is_dir())

    def read(split: Path):
        xs, ys = [], []
        for label, name in enumerate(classes):
            for file in sorted((split / name).glob("*")):
                if file.suffix.lower() in IMAGE_SUFFIXES:
                    img = Image.open(file).convert("RGB").resize((size, size))
                    xs.append(torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1) / 255.0)
                    ys.append(label)
        if not xs:
            raise ValueError(f"data={split} holds no images of the classes {classes}")
        return torch.stack(xs), torch.tensor(ys)

    return ImageData(root.name, *read(root / "train"), *read(test_dir), classes)


def load_images(data: str, image_size: int | None = None) -> ImageData:
    """The data set named by ``data`` ("digits" or a path), normalised, optionally resized."""
    if data == "digits":
        ds = digits()
    elif data == "teacher":
        ds = teacher(**TEACHER)
    else:
        root = Path(data)
        if (root / "data_batch_1").exists():
            ds = cifar10(root)
        elif (root / "train").is_dir():
            ds = image_folder(root, image_size or 32)
        else:
            raise ValueError(
                f"data={data!r} is not recognised: allowed 'digits', 'teacher', a CIFAR-10 python folder "
                "(data_batch_1..5, test_batch) or an image folder PATH/train|val/<class>/*"
            )
    if image_size and ds.train_x.shape[-1] != image_size:
        ds.train_x, ds.test_x = (
            F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
            for x in (ds.train_x, ds.test_x)
        )
    ds = hold_out_validation(ds)
    mean = ds.train_x.mean(dim=(0, 2, 3), keepdim=True)
    std = ds.train_x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    ds.train_x, ds.val_x, ds.test_x = ((x - mean) / std for x in (ds.train_x, ds.val_x, ds.test_x))
    return ds
