"""Presets of the accuracy experiments: ``smoke`` (CI, minutes on a CPU), ``default``, ``thesis``.

``thesis`` is the scale of "Memory Better Spent" (randn 1296×1296, every MiniLM layer, longer
training) and wants a GPU. An experiment's ``run_*`` takes a preset name or an instance.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace

from .runner import BUDGETS

# Preset fields that choose which points run, not how a point runs: left out of the
# configuration hash, so widening the seeds or budgets of a run reuses its finished points.
SELECTION_FIELDS = ("seeds", "budgets", "formats")

# The smoke sweep's shapes and budgets (64×64 at 50% / 20%) are among these, so a CPU
# ``mbs run`` joins accuracy with latency in its report.
SMOKE_SIZES = (64, 256)
SMOKE_BUDGETS = (0.05, 0.2, 0.5)
# Projection adds one budget above half of dense, where formats built on a 2:4 core plus
# extra factors (ARMOR) first fit.
SMOKE_PROJECTION_BUDGETS = (*SMOKE_BUDGETS, 0.6)


@dataclass(frozen=True)
class ProjectionPreset:
    sizes: tuple[int, ...] = SMOKE_SIZES  # Gaussian randn(n, n) sources
    seeds: tuple[int, ...] = (0,)
    budgets: tuple[float, ...] = SMOKE_PROJECTION_BUDGETS
    encoder_layers: tuple[int, ...] = (0,)  # pretrained encoder layers whose linears are sources
    encoder_linears: str | None = None  # regex on the linears' names within those layers; None: all
    sentences: int = 16  # corpus sentences whose activations X give ‖(W−Ŵ)X‖
    calibration_sentences: int = 16  # `real` source: disjoint sentences whose activations
    # are passed as X to data-aware projections; 0: no `real`
    formats: tuple[str, ...] | None = None  # None: every registered format
    model: str | None = None  # encoder directory; None: the packaged MiniLM


@dataclass(frozen=True)
class PretrainPreset:
    data: str = "digits"  # "digits" (scikit-learn) or a CIFAR-10 / image-folder path
    image_size: int | None = None  # resize to this (None: the data's own size)
    patch: int = 4  # 8×8 digits: 4 patches + class token
    dim: int = 64
    depth: int = 2
    heads: int = 4
    epochs: int = 8
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.05
    budgets: tuple[float, ...] = (0.25,)
    seeds: tuple[int, ...] = (0,)
    formats: tuple[str, ...] | None = None


@dataclass(frozen=True)
class FinetunePreset:
    model: str | None = None  # encoder dir or causal LM (dir / cached name); None: packaged MiniLM
    data: str | None = None  # text file, wikitext-2 folder (causal LM); None: stdlib docstrings
    layers: tuple[int, ...] | None = (5,)  # transformer blocks whose linears are replaced; None: all
    train_samples: int = 64  # sentences (encoder) or blocks of `block` tokens (causal LM)
    test_samples: int = 32
    block: int = 128
    steps: int = 20
    batch_size: int = 16
    lr: float = 1e-4
    budgets: tuple[float, ...] = (0.25,)
    seeds: tuple[int, ...] = (0,)
    formats: tuple[str, ...] | None = None


PRESETS = {
    "projection": {
        # smoke: only the 384x384 attention linears of the pretrained layer, so the iterative fits
        # (BLAST, ARMOR, DSFormer, CoSpaDi) keep `mbs run` CPU-sized; the MLP's 384x1536 ones are
        # in default and thesis
        "smoke": ProjectionPreset(encoder_linears=r"attention\."),
        "default": ProjectionPreset(
            sizes=(256, 1024),
            seeds=(0, 1, 2),
            budgets=BUDGETS,
            encoder_layers=(0, 5),
            sentences=64,
            calibration_sentences=64,
        ),
        "thesis": ProjectionPreset(
            sizes=(256, 1024, 1296),
            seeds=(0, 1, 2, 3, 4),
            budgets=BUDGETS,
            encoder_layers=(0, 1, 2, 3, 4, 5),
            sentences=256,
            calibration_sentences=256,
        ),
    },
    "pretrain": {
        "smoke": PretrainPreset(),
        "default": PretrainPreset(patch=2, epochs=30, budgets=(0.1, 0.25, 0.5), seeds=tuple(range(12))),
        "thesis": PretrainPreset(
            patch=2,
            dim=256,
            depth=6,
            heads=8,
            epochs=100,
            batch_size=128,
            lr=1e-3,
            budgets=(0.05, 0.1, 0.25, 0.5),
            seeds=(0, 1, 2),
        ),
    },
    "finetune": {
        "smoke": FinetunePreset(),
        "default": FinetunePreset(
            layers=None, train_samples=512, test_samples=128, steps=200, budgets=(0.1, 0.25, 0.5), seeds=(0, 1)
        ),
        "thesis": FinetunePreset(
            layers=None,
            train_samples=768,
            test_samples=256,
            steps=1000,
            budgets=(0.05, 0.1, 0.25, 0.5),
            seeds=(0, 1, 2),
        ),
    },
}


def get_preset(experiment: str, preset, **overrides):
    """The preset ``preset`` (a name or an instance) of ``experiment`` with ``overrides`` applied.

    ``seeds``, ``budgets`` and ``formats`` overrides are validated (``ValueError`` naming them).
    """
    from ..validation import check_choice

    if isinstance(preset, str):
        check_choice("preset", preset, sorted(PRESETS[experiment]))
        preset = PRESETS[experiment][preset]
    overrides = {k: v for k, v in overrides.items() if v is not None}
    overrides.update(check_selection(**{k: overrides[k] for k in SELECTION_FIELDS if k in overrides}))
    return replace(preset, **overrides)


def check_selection(*, seeds=None, budgets=None, formats=None) -> dict:
    """Validated point selection: seeds ints >= 0, budgets in (0, 1], registered format names."""
    from .. import FORMATS
    from ..validation import check_choice, check_float, check_int

    out = {}
    for name, values in (("seeds", seeds), ("budgets", budgets), ("formats", formats)):
        if values is not None and not len(values):
            raise ValueError(f"{name} is empty: give at least one value")
    if seeds is not None:
        out["seeds"] = tuple(check_int("seeds", s, low=0) for s in seeds)
    if budgets is not None:
        out["budgets"] = tuple(check_float("budgets", b, low=0.0, high=1.0, low_open=True) for b in budgets)
    if formats is not None:
        for name in formats:
            check_choice("formats", name, sorted(FORMATS))
        out["formats"] = tuple(formats)
    return out


def config_id(name: str, preset) -> str:
    """``<preset name>-<hash>``: the hash covers every setting but the point selection, so stores
    and points of different configurations never mix (the id is part of each point's key)."""
    settings = {k: v for k, v in asdict(preset).items() if k not in SELECTION_FIELDS}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()
    return f"{name}-{digest[:10]}"


def preset_config(preset, name: str = "custom") -> dict:
    """The preset as a plain dict with its name and :func:`config_id`, recorded with every result
    so the run can be reproduced."""
    return {"preset": name, "id": config_id(name, preset), **asdict(preset)}
