"""Fine-tuning experiment: a pretrained encoder's linears projected into a format, then tuned.

Default (offline): the packaged all-MiniLM-L6-v2 (``bert.py``) on sentences of the Python
standard library's docstrings (``corpus.py``), or on a text file (``--data``, one sentence a
line). The dense model is the teacher; the student is a copy whose linears in the selected
encoder layers are replaced by ``mbs.replace_linears`` at the budget (projection init), then
those layers (not the embeddings or the other layers) are fine-tuned by distillation. Metrics on held-out sentences, before and after fine-tuning:
``distill_loss`` (the student's last hidden states' squared error, relative to the teacher's
mean squared hidden state) and ``embedding_cosine`` (cosine of the sentence embeddings).
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from . import bert, corpus
from .presets import FinetunePreset, get_preset, preset_config
from .runner import accuracy_record, environment, format_names, pick_device, run_points
from .tables import metric_table

KEY_FIELDS = ("experiment", "model", "data", "format", "budget", "seed")
METRICS = ("distill_loss", "embedding_cosine")


def distill_loss(student: nn.Module, teacher: nn.Module, ids, mask) -> torch.Tensor:
    """Mean squared error of the student's last hidden states on real tokens, relative to the teacher's."""
    keep = mask.bool()
    with torch.no_grad():
        target = teacher.hidden_states(ids, mask)[keep]
    return (student.hidden_states(ids, mask)[keep] - target).pow(2).mean() / target.pow(2).mean()


@torch.no_grad()
def evaluate(student: nn.Module, teacher: nn.Module, batch) -> dict[str, float]:
    student.eval()
    return {"distill_loss": distill_loss(student, teacher, *batch).item(),
            "embedding_cosine": (student(*batch) * teacher(*batch)).sum(-1).mean().item()}


def finetune(student: nn.Module, teacher: nn.Module, tokenizer, sentences: list[str], cfg: FinetunePreset,
             seed: int, device) -> None:
    """``cfg.steps`` AdamW steps of distillation on random batches of ``sentences``.

    Only the student's trainable parameters (the selected encoder layers) are updated.
    """
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=cfg.lr)
    student.train()
    for _ in range(cfg.steps):
        pick = torch.randperm(len(sentences), generator=gen)[: cfg.batch_size].tolist()
        ids, mask = (t.to(device) for t in tokenizer([sentences[i] for i in pick]))
        loss = distill_loss(student, teacher, ids, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def text_sentences(data: str | None) -> list[str]:
    """The corpus: non-empty lines of the file ``data``, or the stdlib docstring sentences."""
    if data is None:
        return corpus.stdlib_sentences()
    return sorted({line.strip() for line in Path(data).read_text(encoding="utf-8").splitlines() if line.strip()})


def run_finetune(store: str | Path, *, preset="smoke", model: str | None = None, data: str | None = None,
                 progress: bool = True, device: str | None = None) -> Path:
    """Project + fine-tune for every format × budget × seed of the preset; append the records."""
    from .. import replace_linears

    cfg = get_preset("finetune", preset, model=model, data=data)
    reason = bert.missing_reason(cfg.model)
    if reason:
        raise RuntimeError(f"fine-tuning needs the pretrained encoder: {reason}")
    dev = pick_device(device)
    teacher, tokenizer = bert.load(cfg.model)
    teacher.to(dev).requires_grad_(False)
    sentences = text_sentences(cfg.data)
    width = teacher.embeddings.word_embeddings.embedding_dim
    layers = cfg.layers if cfg.layers is not None else range(len(teacher.encoder.layer))
    prefixes = tuple(f"encoder.layer.{i}." for i in layers)
    config = {"preset": preset if isinstance(preset, str) else "custom", **preset_config(cfg)}
    points = [{"experiment": "finetune", "model": cfg.model or "minilm", "data": cfg.data or "stdlib-docstrings",
               "format": f, "budget": b, "seed": seed, "in_features": width, "out_features": width,
               "metric": "distill_loss", "config": config, "env": environment()}
              for f in format_names(cfg.formats) if f != "dense" for b in cfg.budgets for seed in cfg.seeds]

    def run_point(p: dict) -> list[dict]:
        torch.manual_seed(p["seed"])
        train, test = corpus.split_corpus(sentences, cfg.train_sentences, cfg.test_sentences, p["seed"])
        test_batch = tuple(t.to(dev) for t in tokenizer(test))
        student = replace_linears(copy.deepcopy(teacher), p["format"], budget=p["budget"],
                                  include=lambda name, _: name.startswith(prefixes))
        for i in layers:  # tune the selected layers; embeddings and the other layers stay frozen
            student.encoder.layer[i].requires_grad_(True)
        replaced = {name: m for name, m in student.named_modules() if hasattr(m, "param_count")}
        before = evaluate(student, teacher, test_batch)
        finetune(student, teacher, tokenizer, train, cfg, p["seed"], dev)
        after = evaluate(student, teacher, test_batch)
        params = sum(m.param_count() for m in replaced.values())
        common = {**p, "hparams": {name: m.hparams for name, m in replaced.items()}, "param_count": params,
                  "param_fraction": params / sum(m.in_features * m.out_features for m in replaced.values()),
                  "device": str(dev)}
        del common["metric"]
        return [accuracy_record(**common, metric=f"{metric}_{stage}", value=values[metric])
                for metric in METRICS for stage, values in (("before", before), ("after", after))]

    return run_points(store, points, run_point, key_fields=KEY_FIELDS, desc="finetune", progress=progress)


def finetune_table(records: list[dict]) -> str:
    """Distillation loss and embedding cosine before / after fine-tuning per format and budget."""
    records = [r for r in records if r.get("experiment") == "finetune"]
    return metric_table(records, ["model", "data", "format", "budget", "param_count", "param_fraction"],
                        [f"{m}_{s}" for m in METRICS for s in ("before", "after")])
