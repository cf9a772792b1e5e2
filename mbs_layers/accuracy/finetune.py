"""Fine-tuning experiment: a pretrained transformer's linears projected into a format, then tuned.

The student is a copy of the pretrained model whose linears in the selected blocks are
replaced by ``mbs.replace_linears`` at the budget (projection initialisation); those blocks
(not the embeddings, the head or the other blocks) are then fine-tuned, and the metric is
taken on held-out data before and after. Two tasks:

* default, offline: the packaged all-MiniLM-L6-v2 encoder (``bert.py``), distilled from the
  dense model on sentences of the stdlib docstrings (``corpus.py``) or of ``--data FILE``.
  Metrics: ``distill_loss`` (squared error of the last hidden states relative to the
  teacher's mean square) and ``embedding_cosine`` (of the sentence embeddings);
* ``--model`` naming a local causal LM (e.g. GPT-2; ``causal_lm.py``): language-model loss and
  perplexity on wikitext-2 (``--data``) or the stdlib docstrings.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from ..base import StructuredLinear
from . import bert, corpus
from .memory import module_memory_fields
from .presets import FinetunePreset, get_preset, preset_config
from .runner import (
    accuracy_record,
    block_pattern,
    current_records,
    environment,
    format_names,
    pick_device,
    representable_hparams,
    run_points,
)
from .tables import metric_table

KEY_FIELDS = ("experiment", "config_id", "model", "data", "format", "budget", "seed")
# The train / test split is drawn once with this seed: repeats over seeds vary the batches
# (and randomised projections), never the data, so their spread is the training noise.
DATA_SEED = 0


class EncoderDistillation:
    """The default task: the packaged sentence encoder distilled from its dense self."""

    metrics = ("distill_loss", "embedding_cosine")

    def __init__(self, cfg: FinetunePreset, device):
        reason = bert.missing_reason(cfg.model)
        if reason:
            raise RuntimeError(f"fine-tuning needs the pretrained encoder: {reason}")
        self.model, self.tokenizer = bert.load(cfg.model)
        self.model.to(device).requires_grad_(False)
        self.sentences = text_sentences(cfg.data)
        self.device = device

    def split(self, cfg: FinetunePreset, seed: int):
        """(training sentences, held-out batch) for ``seed``."""
        train, test = corpus.split_corpus(self.sentences, cfg.train_samples, cfg.test_samples, seed)
        return train, self.encode(test)

    def encode(self, sentences: list[str]):
        return tuple(t.to(self.device) for t in self.tokenizer(sentences))

    def loss(self, student: nn.Module, batch) -> torch.Tensor:
        """Squared error of the student's last hidden states on real tokens, relative to the teacher's."""
        keep = batch[1].bool()
        with torch.no_grad():
            target = self.model.hidden_states(*batch)[keep]
        return (student.hidden_states(*batch)[keep] - target).pow(2).mean() / target.pow(2).mean()

    @torch.no_grad()
    def evaluate(self, student: nn.Module, batch) -> dict[str, float]:
        student.eval()
        return {
            "distill_loss": self.loss(student, batch).item(),
            "embedding_cosine": (student(*batch) * self.model(*batch)).sum(-1).mean().item(),
        }


def text_sentences(data: str | None) -> list[str]:
    """The corpus: non-empty lines of the file ``data``, or the stdlib docstring sentences."""
    if data is None:
        return corpus.stdlib_sentences()
    return sorted({line.strip() for line in Path(data).read_text(encoding="utf-8").splitlines() if line.strip()})


def make_task(cfg: FinetunePreset, device):
    """The causal-LM task when ``cfg.model`` is a causal LM, else the encoder distillation."""
    from . import causal_lm

    if cfg.model is not None and causal_lm.is_causal_lm(cfg.model):
        return causal_lm.CausalLM(cfg, device)
    return EncoderDistillation(cfg, device)


def selected_shapes(model: nn.Module, inside) -> set[tuple[int, int]]:
    """(in, out) of the linears ``replace_linears`` will replace (names matching ``inside``)."""
    from ..replace import _conv1d_class

    conv1d = _conv1d_class()
    shapes = set()
    for name, module in model.named_modules():
        if inside.search(name) and isinstance(module, nn.Linear):
            shapes.add((module.in_features, module.out_features))
        elif inside.search(name) and conv1d is not None and isinstance(module, conv1d):
            shapes.add(tuple(module.weight.shape))  # GPT-2 Conv1D stores (in, out)
    return shapes


def finetune(task, student: nn.Module, train: list, cfg: FinetunePreset, seed: int) -> None:
    """``cfg.steps`` AdamW steps of ``task.loss`` on random batches of ``train`` (trainable params only)."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=cfg.lr)
    student.train()
    for _ in range(cfg.steps):
        pick = torch.randperm(len(train), generator=gen)[: cfg.batch_size].tolist()
        loss = task.loss(student, task.encode([train[i] for i in pick]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def run_finetune(
    store: str | Path,
    *,
    preset="smoke",
    model: str | None = None,
    data: str | None = None,
    progress: bool = True,
    device: str | None = None,
    **selection,
) -> Path:
    """Project + fine-tune for every format × budget × seed of the preset; append the records.

    ``selection``: ``seeds``, ``budgets``, ``formats`` overriding the preset's."""
    from .. import replace_linears

    cfg = get_preset("finetune", preset, model=model, data=data, **selection)
    dev = pick_device(device)
    task = make_task(cfg, dev)
    inside = block_pattern(cfg.layers)
    width = next(m for m in task.model.modules() if isinstance(m, nn.Embedding)).embedding_dim
    config = preset_config(cfg, preset if isinstance(preset, str) else "custom")
    points = [
        {
            "experiment": "finetune",
            "config_id": config["id"],
            "model": cfg.model or "minilm",
            "data": cfg.data or "stdlib-docstrings",
            "format": f,
            "budget": b,
            "seed": seed,
            "in_features": width,
            "out_features": width,
            "metric": task.metrics[0],
            "config": config,
            "env": environment(),
        }
        for f in format_names(cfg.formats)
        if f != "dense"
        for b in cfg.budgets
        for seed in cfg.seeds
    ]

    def run_point(p: dict) -> list[dict]:
        torch.manual_seed(p["seed"])
        train, test = task.split(cfg, DATA_SEED)
        for shape in selected_shapes(task.model, inside):
            representable_hparams(p["format"], *shape, p["budget"])  # CannotRepresent: skipped
        student = replace_linears(
            copy.deepcopy(task.model),
            p["format"],
            budget=p["budget"],
            include=lambda name, _: bool(inside.search(name)),
        )
        replaced = {name: m for name, m in student.named_modules() if isinstance(m, StructuredLinear)}
        if not replaced:
            raise ValueError(f"layers={cfg.layers} selects no linear layer of the model")
        for name, param in student.named_parameters():  # tune the selected blocks only
            param.requires_grad_(bool(inside.search(name)))
        before = task.evaluate(student, test)
        finetune(task, student, train, cfg, p["seed"])
        after = task.evaluate(student, test)
        common = {
            **p,
            "hparams": {name: m.hparams for name, m in replaced.items()},
            "device": str(dev),
            **module_memory_fields(p["format"], list(replaced.values())),
        }
        del common["metric"]
        return [
            accuracy_record(**common, metric=f"{metric}_{stage}", value=values[metric])
            for metric in task.metrics
            for stage, values in (("before", before), ("after", after))
        ]

    return run_points(store, points, run_point, key_fields=KEY_FIELDS, desc="finetune", progress=progress)


def finetune_table(records: list[dict]) -> str:
    """Each metric before / after fine-tuning per model, data, format and budget."""
    records = current_records([r for r in records if r.get("experiment") == "finetune"], KEY_FIELDS)
    metrics = sorted(
        {r["metric"] for r in records if r.get("status") == "ok"},
        key=lambda m: (m.rsplit("_", 1)[0], m.endswith("after")),
    )
    return metric_table(
        records,
        ["config_id", "model", "data", "format", "budget", "param_count", "param_fraction", "storage_fraction"],
        metrics,
    )
