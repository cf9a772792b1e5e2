"""Pre-training experiment: data loaders parse generated fixtures, the smoke ViT learns."""

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from mbs_layers.accuracy.images import load_images
from mbs_layers.accuracy.presets import PretrainPreset
from mbs_layers.accuracy.pretrain import pretrain_table, run_pretrain
from mbs_layers.records import ACCURACY_KEYS, RecordStore


def write_cifar(root, rng):
    """CIFAR-10's python layout: pickled dicts of uint8 rows (3·32·32, channel-major) and labels."""
    batches = {}
    for name, n in (("data_batch_1", 5), ("data_batch_2", 3), ("test_batch", 4)):
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, n))}
        (root / name).write_bytes(pickle.dumps(batch))
        batches[name] = batch
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": [f"c{i}".encode() for i in range(10)]}))
    return batches


def test_cifar10_loader_parses_the_pickle_layout(tmp_path):
    batches = write_cifar(tmp_path, np.random.default_rng(0))
    ds = load_images(str(tmp_path))
    assert ds.train_x.shape == (8, 3, 32, 32) and ds.test_x.shape == (4, 3, 32, 32)
    assert ds.classes == [f"c{i}" for i in range(10)]
    assert ds.train_y.tolist() == batches["data_batch_1"][b"labels"] + batches["data_batch_2"][b"labels"]
    # normalised per channel with the training set's statistics; pixel order preserved
    raw = torch.as_tensor(batches["test_batch"][b"data"]).reshape(4, 3, 32, 32).float() / 255
    corr = torch.corrcoef(torch.stack([raw[:, 1].flatten(), ds.test_x[:, 1].flatten()]))[0, 1]
    assert corr > 0.999 and ds.train_x.mean(dim=(0, 2, 3)).abs().max() < 1e-5


def test_image_folder_loader_reads_classes_and_resizes(tmp_path):
    rng = np.random.default_rng(1)
    for split, per_class in (("train", 3), ("val", 2)):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (10, 14, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / split / cls / f"{i}.png")
    ds = load_images(str(tmp_path), image_size=8)
    assert ds.classes == ["cat", "dog"]
    assert ds.train_x.shape == (6, 3, 8, 8) and ds.test_x.shape == (4, 3, 8, 8)
    assert ds.train_y.tolist() == [0, 0, 0, 1, 1, 1] and ds.test_y.tolist() == [0, 0, 1, 1]


def test_validation_split_is_stratified_fixed_and_disjoint():
    ds = load_images("digits")
    again = load_images("digits")
    assert torch.equal(ds.val_x, again.val_x) and torch.equal(ds.test_y, again.test_y)
    assert len(ds.test_y) == 445 and len(ds.train_y) + len(ds.val_y) + len(ds.test_y) == 1797
    counts = torch.bincount(ds.val_y, minlength=10).float() / torch.bincount(ds.train_y + 0, minlength=10)
    assert ((counts - 0.25).abs() < 0.03).all()  # 20% of each class moved: 1/4 of what remains
    rows = lambda x: {tuple(v.tolist()) for v in x.flatten(1)}
    assert not rows(ds.val_x) & rows(ds.test_x)


def test_unknown_data_raises_naming_data(tmp_path):
    with pytest.raises(ValueError, match="data="):
        load_images(str(tmp_path))


def test_smoke_pretraining_learns_dense_and_lowrank(tmp_path):
    preset = PretrainPreset(patch=4, dim=32, depth=1, heads=2, epochs=4, budgets=(0.5,), formats=("dense", "lowrank"))
    store = run_pretrain(tmp_path / "pt.jsonl", preset=preset, progress=False)
    records = RecordStore(store).records()
    assert all(set(ACCURACY_KEYS) <= set(r) and r["status"] == "ok" for r in records)
    result = {r["format"]: r for r in records if r["metric"] == "test_accuracy"}
    assert set(result) == {"dense", "lowrank"}
    for r in result.values():
        assert r["value"] > 0.5  # chance is 0.1 on the ten digits
    assert result["lowrank"]["param_count"] < 0.5 * result["dense"]["param_count"]
    # model selection on the validation split: the reported epoch is the best validation epoch
    curve = [r["value"] for r in records if r["metric"] == "val_accuracy" and r["format"] == "lowrank"]
    assert len(curve) == 4 and curve.index(max(curve)) + 1 == result["lowrank"]["selected_epoch"]
    assert result["lowrank"]["val_accuracy"] == max(curve)
    assert not any("test" in r["metric"] and r.get("epoch") for r in records)  # test touched once
    assert "lowrank" in pretrain_table(records)


def test_pretraining_is_reproducible_from_config_and_seed(tmp_path):
    preset = PretrainPreset(patch=4, dim=16, depth=1, heads=2, epochs=1, budgets=(0.5,), formats=("lowrank",))
    first, second = (
        RecordStore(run_pretrain(tmp_path / f"{i}.jsonl", preset=preset, progress=False)).records() for i in range(2)
    )
    assert [r["value"] for r in first] == [r["value"] for r in second]
    assert first[0]["config"]["dim"] == 16 and first[0]["seed"] == 0
