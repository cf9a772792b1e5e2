"""``replace_linears`` on real models: the packaged MiniLM (mbs_layers' own BERT loader) and a
small GPT-2 built from a transformers config (its ``Conv1D`` layers store W transposed)."""

import copy

import pytest
import torch
from torch import nn

import mbs_layers as mbs
from mbs_layers.accuracy import bert


def structured_layers(model):
    return {name: m for name, m in model.named_modules() if isinstance(m, mbs.StructuredLinear)}


def assert_budget_kept(model, name, budget):
    """Every replaced layer has the largest param count of its format not above budget · in · out."""
    layers = structured_layers(model)
    assert layers
    for qual, layer in layers.items():
        allowed = max(1, int(budget * layer.in_features * layer.out_features))
        best = mbs.FORMATS[name].hparams_for_budget(layer.in_features, layer.out_features, allowed)
        assert layer.name == name and layer.hparams == best, qual
        assert layer.param_count() <= allowed


FIRST_BLOCK = "encoder.layer.0."  # one transformer block keeps the projections quick on CPU


@pytest.fixture(scope="module")
def minilm():
    reason = bert.missing_reason()
    if reason is not None:
        pytest.skip(reason)
    return bert.load()


def test_minilm_high_budget_keeps_the_embeddings(minilm):
    model, tokenizer = minilm
    batch = tokenizer(["A man is playing a guitar.", "Stocks fell sharply today.", "Héllo!"])
    with torch.no_grad():
        before = model(*batch)
        linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and FIRST_BLOCK in n]
        swapped = mbs.replace_linears(
            copy.deepcopy(model), "unstructured", budget=0.95, include=lambda qual, m: FIRST_BLOCK in qual
        )
        after = swapped(*batch)
    assert set(structured_layers(swapped)) == set(linears)  # every linear swapped, names kept
    assert len(linears) == 6  # query, key, value, attention output, intermediate, output
    assert_budget_kept(swapped, "unstructured", 0.95)
    assert torch.nn.functional.cosine_similarity(before, after).min() > 0.99


def test_minilm_low_budget_counts_as_asked(minilm):
    model, _ = minilm
    dense = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    swapped = mbs.replace_linears(
        copy.deepcopy(model),
        "lowrank",
        budget=0.25,
        include=lambda qual, m: FIRST_BLOCK in qual and "attention" in qual,
    )
    assert len(structured_layers(swapped)) == 4 and all("attention" in q for q in structured_layers(swapped))
    assert_budget_kept(swapped, "lowrank", 0.25)
    kept = sum(m.weight.numel() for m in swapped.modules() if isinstance(m, nn.Linear))
    replaced = sum(layer.param_count() for layer in structured_layers(swapped).values())
    assert kept + replaced < dense  # only the swapped layers shrank, to a quarter or less
    assert replaced <= 0.25 * (dense - kept)


@pytest.fixture(scope="module")
def gpt2():
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=32, vocab_size=101)
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(config).eval()


def test_gpt2_full_rank_reproduces_the_logits(gpt2):
    ids = torch.randint(0, 101, (2, 12), generator=torch.Generator().manual_seed(0))
    conv = [n for n, m in gpt2.transformer.named_modules() if type(m).__name__ == "Conv1D"]
    with torch.no_grad():
        before = gpt2(ids).logits
        swapped = mbs.replace_linears(
            copy.deepcopy(gpt2), "lowrank", rank=64, include=lambda qual, m: qual != "lm_head"
        )
        after = swapped(ids).logits
    assert {q.removeprefix("transformer.") for q in structured_layers(swapped)} == set(conv)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)


def test_gpt2_budget_counts_as_asked(gpt2):
    swapped = mbs.replace_linears(copy.deepcopy(gpt2), "monarch", budget=0.5, include=lambda qual, m: qual != "lm_head")
    assert_budget_kept(swapped, "monarch", 0.5)
    with torch.no_grad():
        logits = swapped(torch.zeros(1, 4, dtype=torch.long)).logits
    assert logits.shape == (1, 4, 101) and torch.isfinite(logits).all()


def test_budget_and_hparams_together_raise():
    with pytest.raises(ValueError, match="budget"):
        mbs.replace_linears(nn.Sequential(nn.Linear(8, 8)), "lowrank", budget=0.5, rank=2)
