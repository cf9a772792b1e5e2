"""Projection experiment: error of each format's best approximation against its parameter count.

Sources (as in "Memory Better Spent"): Gaussian ``randn(n, n)`` matrices, and the linear
weights of a pretrained encoder that ships in a package (all-MiniLM-L6-v2, see ``bert.py``).
For the pretrained weights two data-aware errors are recorded too, on the real input
activations X of that layer over corpus sentences: the output error ‖(W − Ŵ)X‖_F / ‖WX‖_F,
which a few outlier output rows can dominate, and its row-normalised form (every output row's
relative error weighted equally, :func:`output_errors`). The ``real`` source
(``real/minilm/<layer>``) repeats the pretrained weights with calibration: the activations of
a disjoint sample of sentences are passed as ``X`` to ``approximate`` for the formats with a
data-aware projection (``data_aware``), and every format's output errors are
measured on held-out sentences, so calibrated and plain projections compare where it matters.
Unstructured sparsity (magnitude pruning) is the reference lower bound.

Budgets are fractions of the dense parameter count; each format's hyper-parameters come from
``hparams_for_budget`` (a format that cannot represent a shape or budget is recorded as
skipped). Every record carries ``param_count`` and ``storage_bytes`` (indices and metadata
included) with both as fractions of dense. Seeds draw the Gaussian matrix and seed the
randomised / iterative projections.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from . import bert, corpus
from .memory import memory_fields
from .presets import ProjectionPreset, get_preset, preset_config
from .runner import (
    accuracy_record,
    block_pattern,
    current_records,
    environment,
    format_names,
    pick_device,
    point_budgets,
    representable_hparams,
    run_points,
)
from .tables import render, summary

KEY_FIELDS = ("experiment", "config_id", "source", "format", "budget", "seed")


@dataclass(frozen=True)
class Source:
    """A weight matrix to project: ``weight(seed)`` (out, in), and optional activations (tokens, in)."""

    name: str
    out_features: int
    in_features: int
    weight: Callable[[int], torch.Tensor]
    inputs: torch.Tensor | None = None
    calibration: torch.Tensor | None = None  # X passed to data-aware projections (the `real` source)
    uncalibrated: str | None = None  # the source with the same weight and inputs, without calibration


@lru_cache(maxsize=4)
def gaussian(n: int, seed: int, device: str = "cpu") -> torch.Tensor:
    """``randn(n, n)`` drawn with ``seed`` (the thesis's Gaussian source)."""
    return torch.randn(n, n, generator=torch.Generator().manual_seed(seed)).to(device)


def gaussian_sources(sizes, device) -> list[Source]:
    return [Source(f"randn{n}", n, n, lambda seed, n=n: gaussian(n, seed, str(device))) for n in sizes]


def selected_linear(cfg: ProjectionPreset, inside, name: str) -> bool:
    """Whether the encoder linear ``name`` is in the preset's layers (``inside``) and matches its
    ``encoder_linears`` pattern (every linear where that is None)."""
    pattern = cfg.encoder_linears
    return bool(inside.search(name)) and (pattern is None or re.search(pattern, name) is not None)


def encoder_sources(cfg: ProjectionPreset, device) -> list[Source]:
    """Every ``nn.Linear`` of the selected encoder layers, with its activations on corpus sentences."""
    if not cfg.encoder_layers:
        return []
    reason = bert.missing_reason(cfg.model)
    if reason:
        print(f"projection: pretrained weights skipped: {reason}", file=sys.stderr)
        return []
    model, tokenizer = bert.load(cfg.model)
    sentences, _ = corpus.split_corpus(corpus.stdlib_sentences(), cfg.sentences, 0, seed=0)
    inputs = bert.linear_inputs(model, *tokenizer(sentences))
    inside = block_pattern(cfg.encoder_layers)
    sources = []
    for name, module in model.named_modules():
        if name in inputs and selected_linear(cfg, inside, name):
            w = module.weight.detach().to(device)
            sources.append(Source(f"minilm/{name}", *w.shape, lambda seed, w=w: w, inputs[name].to(device)))
    return sources


def output_errors(diff: torch.Tensor, weight: torch.Tensor, inputs: torch.Tensor) -> dict[str, tuple]:
    """Data-aware errors of ``Ŵ = weight − diff`` on activations ``inputs`` (tokens, in).

    * ``rel_output_error`` ‖(W−Ŵ)X‖_F / ‖WX‖_F: what the next layer receives, in total; one
      output row with a large activation (MiniLM's ``output.dense`` row 99 holds ~98% of
      ‖WX‖²) dominates it, so a format that keeps that row wins whatever it does elsewhere;
    * ``rel_output_error_rownorm`` sqrt(mean_i ‖(W−Ŵ)_i X‖² / ‖W_i X‖²): each output row's
      relative error weighted equally (rows with ‖W_i X‖ = 0 left out); robust to outlier rows.

    Values are (absolute, relative); the row-normalised error has no absolute form (None).
    """
    out_diff, out_ref = inputs @ diff.T, inputs @ weight.T
    row_ref = out_ref.pow(2).sum(0)
    live = row_ref > 0
    rownorm = (out_diff.pow(2).sum(0)[live] / row_ref[live]).mean().sqrt()
    return {
        "rel_output_error": (out_diff.norm().item(), (out_diff.norm() / out_ref.norm()).item()),
        "rel_output_error_rownorm": (None, rownorm.item()),
    }


def real_sources(cfg: ProjectionPreset, device) -> list[Source]:
    """The ``real`` source: every ``nn.Linear`` of the selected encoder layers with calibration
    activations of ``cfg.calibration_sentences`` sentences, evaluated on the ``minilm/`` source's
    held-out sentences (disjoint from the calibration ones)."""
    if not cfg.encoder_layers or not cfg.calibration_sentences or bert.missing_reason(cfg.model):
        return []  # encoder_sources already said why the pretrained weights are skipped
    model, tokenizer = bert.load(cfg.model)
    sentences = corpus.stdlib_sentences()
    held_out, _ = corpus.split_corpus(sentences, cfg.sentences, 0, seed=0)  # as encoder_sources
    unseen = sorted(set(sentences) - set(held_out))
    calibration, _ = corpus.split_corpus(unseen, cfg.calibration_sentences, 0, seed=0)
    inputs = bert.linear_inputs(model, *tokenizer(held_out))
    calib = bert.linear_inputs(model, *tokenizer(calibration))
    inside = block_pattern(cfg.encoder_layers)
    weights = {
        name: m.weight.detach().to(device)
        for name, m in model.named_modules()
        if name in inputs and selected_linear(cfg, inside, name)
    }
    return [
        Source(
            f"real/minilm/{name}",
            *w.shape,
            lambda seed, w=w: w,
            inputs[name].to(device),
            calib[name].to(device),
            uncalibrated=f"minilm/{name}",
        )
        for name, w in weights.items()
    ]


def result_source(src: Source, name: str) -> str:
    """The source whose result format ``name`` shares on ``src``: a format that ignores the
    calibration gets exactly the uncalibrated twin's numbers, so they are computed once."""
    return src.uncalibrated if src.uncalibrated and not calibrated(name, src.calibration) else src.name


def calibrated(name: str, calibration: torch.Tensor | None) -> dict:
    """``approximate``'s ``X`` for format ``name``: the calibration activations where the format
    has a data-aware projection (others would only warn that they ignore it)."""
    from .. import format_class

    return {"X": calibration} if calibration is not None and format_class(name).data_aware else {}


def project_errors(
    name: str,
    hparams: dict,
    weight: torch.Tensor,
    inputs: torch.Tensor | None,
    seed: int,
    calibration: torch.Tensor | None = None,
) -> tuple[int, int, dict[str, tuple]]:
    """(param count, storage bytes, {metric: (absolute, relative) error}) of
    ``approximate(name, weight)``, given ``calibration`` activations as ``X`` where the format is
    data-aware."""
    from .. import approximate

    torch.manual_seed(seed)  # randomised supports / iterative solvers are reproducible
    with torch.no_grad():
        layer = approximate(name, weight, **calibrated(name, calibration), **hparams)
        diff = weight - layer.dense_weight().to(weight.dtype)
        errors = {"rel_frobenius_error": (diff.norm().item(), (diff.norm() / weight.norm()).item())}
        if inputs is not None:
            errors.update(output_errors(diff, weight, inputs))
    return layer.param_count(), layer.storage_bytes(), errors


def run_projection(
    store: str | Path,
    *,
    preset="smoke",
    progress: bool = True,
    device: str | None = None,
    model: str | None = None,
    **selection,
) -> Path:
    """Append projection records for every registered format, source, budget and seed; resumable.

    ``preset`` is a name (smoke, default, thesis) or a ``ProjectionPreset``; ``model`` overrides
    its pretrained encoder directory; ``selection`` (``seeds``, ``budgets``, ``formats``) its points.
    """
    cfg = get_preset("projection", preset, model=model, **selection)
    dev = pick_device(device)
    sources = gaussian_sources(cfg.sizes, dev) + encoder_sources(cfg, dev) + real_sources(cfg, dev)
    by_name = {s.name: s for s in sources}
    config = preset_config(cfg, preset if isinstance(preset, str) else "custom")
    points = [
        {
            "experiment": "projection",
            "config_id": config["id"],
            "source": s.name,
            "format": f,
            "budget": b,
            "seed": seed,
            "in_features": s.in_features,
            "out_features": s.out_features,
            "metric": "rel_frobenius_error",
            "config": config,
            "env": environment(),
        }
        for s in sources
        for seed in cfg.seeds
        for f in format_names(cfg.formats)
        for b in point_budgets(f, cfg.budgets)
    ]
    cache: dict[str, tuple] = {}

    def run_point(p: dict) -> list[dict]:
        src = by_name[p["source"]]
        hp = representable_hparams(p["format"], src.in_features, src.out_features, p["budget"])
        key = repr((result_source(src, p["format"]), p["format"], sorted(hp.items()), p["seed"]))
        if key not in cache:  # several budgets can map to the same hyper-parameters
            cache[key] = project_errors(p["format"], hp, src.weight(p["seed"]), src.inputs, p["seed"], src.calibration)
        params, storage, errors = cache[key]
        sizes = memory_fields(
            p["format"],
            [(src.in_features, src.out_features, hp)],
            params,
            storage,
            src.weight(p["seed"]).element_size(),
        )
        return [
            accuracy_record(
                **{**p, "metric": metric},
                hparams=hp,
                param_count=params,
                value=rel,
                abs_error=abs_err,
                rel_error=rel,
                device=str(dev),
                **sizes,
                **calibration_fields(p["format"], src),
            )
            for metric, (abs_err, rel) in errors.items()
        ]

    return run_points(store, points, run_point, key_fields=KEY_FIELDS, desc="projection", progress=progress)


def calibration_fields(name: str, src: Source) -> dict:
    """Record fields of a calibrated source: how many activation rows format ``name`` was given."""
    if src.calibration is None:
        return {}
    return {"calibration_tokens": src.calibration.shape[0] if calibrated(name, src.calibration) else 0}


def projection_table(records: list[dict]) -> str:
    """Error vs parameter count per source, metric and format (mean ± std over seeds), as text."""
    records = current_records([r for r in records if r.get("experiment") == "projection"], KEY_FIELDS)
    by = ["config_id", "source", "metric", "format", "hparams", "param_count", "param_fraction", "storage_fraction"]
    table = summary(
        records, by, ["abs_error", "rel_error"], order=["config_id", "source", "metric", "format", "param_count"]
    )
    return render(table, records)
