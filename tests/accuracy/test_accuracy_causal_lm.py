"""Fine-tuning a causal LM (the GPT-2 path) on a tiny GPT-2 and wikitext-style files made here."""

import math

import pytest
import torch

from mbs_layers.accuracy.causal_lm import is_causal_lm, lm_texts
from mbs_layers.accuracy.finetune import finetune_table, run_finetune
from mbs_layers.accuracy.presets import FinetunePreset
from mbs_layers.records import RecordStore

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

WORDS = "the cat sat on a mat while the dog ran to the park and back again".split()


def write_wikitext(root, rng):
    text = lambda n: "\n".join(
        " ".join(WORDS[(i + j) % len(WORDS)] for j in range(12)) for i in rng.integers(0, len(WORDS), n)
    )
    (root / "wiki.train.tokens").write_text(text(200))
    (root / "wiki.test.tokens").write_text(text(40))


def write_tiny_gpt2(root):
    """A randomly initialised 2-block GPT-2 and a word-level tokenizer, saved like a checkpoint."""
    vocab = {w: i for i, w in enumerate(["[UNK]", *sorted(set(WORDS))])}
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    transformers.PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]").save_pretrained(root)
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=len(vocab), n_positions=32, n_embd=32, n_layer=2, n_head=2)
    transformers.GPT2LMHeadModel(config).save_pretrained(root)


def test_wikitext_folder_and_model_kind(tmp_path):
    import numpy as np

    write_wikitext(tmp_path, np.random.default_rng(0))
    train, test = lm_texts(str(tmp_path))
    assert len(train.splitlines()) == 200 and len(test.splitlines()) == 40
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    assert not is_causal_lm(str(tmp_path)) and is_causal_lm("gpt2")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="data="):
        lm_texts(str(tmp_path / "empty"))


def test_gpt2_projection_then_finetuning_lowers_perplexity(tmp_path):
    import numpy as np

    (tmp_path / "model").mkdir()
    (tmp_path / "data").mkdir()
    write_tiny_gpt2(tmp_path / "model")
    write_wikitext(tmp_path / "data", np.random.default_rng(1))
    preset = FinetunePreset(
        model=str(tmp_path / "model"),
        data=str(tmp_path / "data"),
        layers=(1,),
        block=16,
        train_samples=32,
        test_samples=8,
        steps=15,
        batch_size=8,
        lr=3e-3,
        budgets=(0.5,),
        formats=("lowrank",),
    )
    records = RecordStore(run_finetune(tmp_path / "ft.jsonl", preset=preset, progress=False)).records()
    value = {r["metric"]: r["value"] for r in records}
    assert all(r["status"] == "ok" for r in records)
    assert sorted(records[0]["hparams"]) == [
        f"transformer.h.1.{n}" for n in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    ]
    assert value["perplexity_after"] < value["perplexity_before"]
    assert value["perplexity_after"] == pytest.approx(math.exp(value["lm_loss_after"]))
    assert "perplexity_after" in finetune_table(records)
