"""Pre-training experiment: a small ViT trained from scratch with structured linear layers.

The thesis's set-up, scaled: patchify (a dense strided convolution), a class token, learned
positions, pre-LN transformer blocks with MLP ratio 2, a dense head. In every block the Q, K,
V projections and both MLP linears are built in the format under test (``mbs.build`` with
``hparams_for_budget`` at the budget); the attention output projection, the embedding and the
head stay dense. AdamW with a per-step cosine schedule, fixed seeds. Model selection is on the
validation split: the epoch with the best validation accuracy (the first on ties) is kept and
its test accuracy, measured once, is the result (``test_accuracy``); ``val_accuracy`` is
recorded per epoch. The seed draws the initialisation and batch order; the data split is fixed.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ..base import StructuredLinear
from .images import ImageData, load_images
from .memory import module_memory_fields
from .presets import PretrainPreset, get_preset, preset_config
from .runner import (
    accuracy_record,
    current_records,
    environment,
    format_names,
    pick_device,
    point_budgets,
    representable_hparams,
    run_points,
)
from .tables import metric_table

KEY_FIELDS = ("experiment", "config_id", "data", "format", "budget", "seed")
MLP_RATIO = 2


class Block(nn.Module):
    """Pre-LN transformer block; ``make_linear(in, out)`` builds Q, K, V and the MLP linears."""

    def __init__(self, dim: int, heads: int, make_linear):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.q, self.k, self.v = (make_linear(dim, dim) for _ in range(3))
        self.proj = nn.Linear(dim, dim)
        self.fc1, self.fc2 = make_linear(dim, MLP_RATIO * dim), make_linear(MLP_RATIO * dim, dim)

    def forward(self, x):
        b, t, d = x.shape
        h = self.norm1(x)
        q, k, v = (lin(h).view(b, t, self.heads, d // self.heads).transpose(1, 2) for lin in (self.q, self.k, self.v))
        x = x + self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class ViT(nn.Module):
    def __init__(
        self, *, image_size: int, channels: int, classes: int, patch: int, dim: int, depth: int, heads: int, make_linear
    ):
        super().__init__()
        if image_size % patch:
            raise ValueError(f"patch={patch} must divide the image size {image_size}")
        if dim % heads:
            raise ValueError(f"heads={heads} must divide dim={dim}")
        self.embed = nn.Conv2d(channels, dim, patch, stride=patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, (image_size // patch) ** 2 + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*(Block(dim, heads, make_linear) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, images):
        x = self.embed(images).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], dim=1) + self.pos
        return self.head(self.norm(self.blocks(x))[:, 0])


def structured_factory(name: str, budget: float):
    """``make_linear(in, out)`` building format ``name`` at ``budget``; the hyper-parameters it used."""
    from .. import build

    used: dict[str, dict] = {}

    def make_linear(in_features, out_features):
        hp = representable_hparams(name, in_features, out_features, budget)
        used[f"{out_features}x{in_features}"] = hp
        return build(name, in_features, out_features, **hp)

    return make_linear, used


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 512) -> float:
    model.eval()
    correct = sum(
        (model(x[i : i + batch]).argmax(-1) == y[i : i + batch]).sum().item() for i in range(0, len(y), batch)
    )
    return correct / len(y)


def train(model: nn.Module, data: ImageData, cfg: PretrainPreset, seed: int, device) -> tuple[list[float], int, float]:
    """AdamW + cosine schedule for ``cfg.epochs``: (validation accuracy per epoch, the selected
    epoch (best validation, first on ties), test accuracy of the model at that epoch)."""
    gen = torch.Generator().manual_seed(seed)
    train_x, train_y = data.train_x.to(device), data.train_y.to(device)
    val_x, val_y = data.val_x.to(device), data.val_y.to(device)
    steps = cfg.epochs * math.ceil(len(train_y) / cfg.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    curve, best_state = [], None
    for _ in range(cfg.epochs):
        model.train()
        for idx in torch.randperm(len(train_y), generator=gen).to(device).split(cfg.batch_size):
            loss = F.cross_entropy(model(train_x[idx]), train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        curve.append(accuracy(model, val_x, val_y))
        if curve[-1] > max(curve[:-1], default=-1.0):
            best_state = copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    selected = curve.index(max(curve)) + 1
    return curve, selected, accuracy(model, data.test_x.to(device), data.test_y.to(device))


def run_pretrain(
    store: str | Path,
    *,
    preset="smoke",
    data: str | None = None,
    progress: bool = True,
    device: str | None = None,
    **selection,
) -> Path:
    """Train the ViT for every format × budget × seed of the preset and append the records.

    ``selection``: ``seeds``, ``budgets``, ``formats`` overriding the preset's."""
    cfg = get_preset("pretrain", preset, data=data, **selection)
    dev = pick_device(device)
    ds = load_images(cfg.data, cfg.image_size)
    config = preset_config(cfg, preset if isinstance(preset, str) else "custom")
    points = [
        {
            "experiment": "pretrain",
            "config_id": config["id"],
            "data": cfg.data,
            "format": f,
            "budget": b,
            "seed": seed,
            "in_features": cfg.dim,
            "out_features": cfg.dim,
            "metric": "test_accuracy",
            "config": config,
            "env": environment(),
        }
        for f in format_names(cfg.formats)
        for b in point_budgets(f, cfg.budgets)
        for seed in cfg.seeds
    ]

    def run_point(p: dict) -> list[dict]:
        torch.manual_seed(p["seed"])
        make_linear, used = structured_factory(p["format"], p["budget"])
        model = ViT(
            image_size=ds.train_x.shape[-1],
            channels=ds.train_x.shape[1],
            classes=len(ds.classes),
            patch=cfg.patch,
            dim=cfg.dim,
            depth=cfg.depth,
            heads=cfg.heads,
            make_linear=make_linear,
        ).to(dev)
        structured = [m for m in model.modules() if isinstance(m, StructuredLinear)]
        curve, selected, test = train(model, ds, cfg, p["seed"], dev)
        common = {
            **p,
            "hparams": used,
            "model_params": sum(t.numel() for t in model.parameters()),
            "device": str(dev),
            **module_memory_fields(p["format"], structured),
        }
        del common["metric"]
        return [
            accuracy_record(**common, metric="val_accuracy", value=acc, epoch=i + 1) for i, acc in enumerate(curve)
        ] + [
            accuracy_record(
                **common,
                metric="test_accuracy",
                value=test,
                selected_epoch=selected,
                val_accuracy=curve[selected - 1],
                epochs=len(curve),
            )
        ]

    return run_points(store, points, run_point, key_fields=KEY_FIELDS, desc="pretrain", progress=progress)


def pretrain_table(records: list[dict]) -> str:
    """Test accuracy (at the validation-selected epoch) per configuration, data set, format and
    budget: mean and 95% t-interval over seeds."""
    records = current_records([r for r in records if r.get("experiment") == "pretrain"], KEY_FIELDS)
    return metric_table(
        records,
        ["config_id", "data", "format", "budget", "param_count", "param_fraction", "storage_fraction"],
        ["test_accuracy"],
    )
