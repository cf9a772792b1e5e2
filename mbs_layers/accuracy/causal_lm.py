"""Fine-tuning task for a local causal language model (GPT-2), as in "Memory Better Spent".

``--model`` is a Hugging Face model directory or a name already in the local Hugging Face
cache (loaded with ``local_files_only=True``: nothing is downloaded); it needs
``transformers``. ``--data`` is a wikitext-2 folder (``wiki.train.*`` and ``wiki.test.*`` or
``wiki.valid.*``, raw or tokens) or a text file (first 90% of its lines train, the rest test);
without it, the stdlib docstring sentences. The text is tokenised and cut into blocks of
``block`` tokens; the metrics are the language-model loss and perplexity on test blocks.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from . import corpus

TRAIN_FRACTION = 0.9


def is_causal_lm(model: str) -> bool:
    """False for a directory holding a BERT-style encoder, True otherwise (a causal LM)."""
    config = Path(model) / "config.json"
    return not (config.exists() and json.loads(config.read_text()).get("model_type") == "bert")


def lm_texts(data: str | None) -> tuple[str, str]:
    """(train text, test text) from a wikitext-2 folder, a text file or the stdlib docstrings."""
    if data is not None and Path(data).is_dir():
        root = Path(data)
        train = sorted(root.glob("wiki.train.*"))
        test = sorted(root.glob("wiki.test.*")) or sorted(root.glob("wiki.valid.*"))
        if not train or not test:
            raise ValueError(f"data={data} has no wiki.train.* and wiki.test.* (or wiki.valid.*) files")
        return train[0].read_text(encoding="utf-8"), test[0].read_text(encoding="utf-8")
    lines = corpus.stdlib_sentences() if data is None else Path(data).read_text(encoding="utf-8").splitlines()
    cut = int(TRAIN_FRACTION * len(lines))
    return "\n".join(lines[:cut]), "\n".join(lines[cut:])


def token_blocks(tokenizer, text: str, block: int) -> torch.Tensor:
    """``text`` tokenised and cut into (n, block) rows (the tail shorter than a block is dropped)."""
    ids = torch.tensor(tokenizer(text)["input_ids"], dtype=torch.long)
    return ids[: len(ids) // block * block].view(-1, block)


class CausalLM:
    """Language-model loss / perplexity of a projected and fine-tuned causal LM."""

    metrics = ("lm_loss", "perplexity")

    def __init__(self, cfg, device):
        try:
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError:
            raise RuntimeError("a causal-LM --model needs transformers: pip install transformers") from None
        self.model = AutoModelForCausalLM.from_pretrained(cfg.model, local_files_only=True)
        self.model.to(device).eval().requires_grad_(False)
        tokenizer = AutoTokenizer.from_pretrained(cfg.model, local_files_only=True)
        self.train_blocks, self.test_blocks = (token_blocks(tokenizer, text, cfg.block) for text in lm_texts(cfg.data))
        self.device = device

    def split(self, cfg, seed: int):
        """(``train_samples`` random training blocks, the first ``test_samples`` test blocks)."""
        for name, have, want in (
            ("train_samples", len(self.train_blocks), cfg.train_samples),
            ("test_samples", len(self.test_blocks), cfg.test_samples),
        ):
            if want > have:
                raise ValueError(f"{name}={want} exceeds the {have} blocks of {cfg.block} tokens in the data")
        pick = torch.randperm(len(self.train_blocks), generator=torch.Generator().manual_seed(seed))
        test = self.encode(list(self.test_blocks[: cfg.test_samples]))
        return list(self.train_blocks[pick[: cfg.train_samples]]), test

    def encode(self, blocks: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(blocks).to(self.device)

    def loss(self, student, batch: torch.Tensor) -> torch.Tensor:
        return student(input_ids=batch, labels=batch).loss

    @torch.no_grad()
    def evaluate(self, student, batch: torch.Tensor) -> dict[str, float]:
        student.eval()
        loss = self.loss(student, batch).item()
        return {"lm_loss": loss, "perplexity": math.exp(loss)}
