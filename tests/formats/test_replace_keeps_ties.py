"""replace_linears leaves tied weights and the output head alone and keeps the model within budget."""

import pytest
import torch
from torch import nn

import mbs_layers as mbs


def unique_params(model) -> int:
    return sum(p.numel() for p in model.parameters())  # parameters() counts a tied tensor once


class TiedLM(nn.Module):
    def __init__(self, vocab=50, d=16):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.lm_head.weight = self.wte.weight  # tied


@pytest.mark.parametrize("budget", [0.5, 0.9, 1.0])
def test_tied_head_is_kept_and_params_do_not_grow(budget):
    model = TiedLM()
    before = unique_params(model)
    mbs.replace_linears(model, "lowrank", budget=budget)
    assert model.lm_head.weight is model.wte.weight and isinstance(model.lm_head, nn.Linear)
    assert all(isinstance(m, mbs.StructuredLinear) for m in model.mlp if not isinstance(m, nn.GELU))
    assert unique_params(model) <= before


def test_untied_output_head_is_kept_by_default_and_replaced_on_request():
    model = TiedLM()
    model.lm_head.weight = nn.Parameter(torch.randn(50, 16))  # untie
    mbs.replace_linears(model, "lowrank", budget=0.5)
    assert isinstance(model.lm_head, nn.Linear)
    mbs.replace_linears(model, "lowrank", budget=0.5, keep_output_head=False)
    assert isinstance(model.lm_head, mbs.StructuredLinear)


def test_gpt2_from_config_keeps_its_tie_and_budget():
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=1000, n_positions=64)
    model = transformers.GPT2LMHeadModel(config)
    before = unique_params(model)
    mbs.replace_linears(model, "lowrank", budget=0.9)
    assert model.lm_head.weight is model.transformer.wte.weight
    assert unique_params(model) <= before
