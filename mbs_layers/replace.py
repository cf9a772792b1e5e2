"""Swap a model's linear layers for a structured format, projecting the pretrained weights."""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .registry import approximate, format_class
from .validation import check_float


def _conv1d_class():
    """transformers' GPT-2 ``Conv1D`` (weight stored (in, out)), or None without transformers."""
    try:
        from transformers.pytorch_utils import Conv1D
    except Exception:  # transformers absent or broken: no Conv1D layers to find
        return None
    return Conv1D


def replace_linears(model: nn.Module, name: str, *, budget: float | None = None,
                    include: Callable[[str, nn.Module], bool] | None = None,
                    backend: str = "auto", **hp) -> nn.Module:
    """Replace ``nn.Linear`` (and GPT-2 ``Conv1D``) modules of ``model`` in place.

    Each replaced layer is ``mbs.approximate(name, W, bias=b, **hp)``; with ``budget`` (a
    fraction in (0, 1] of each layer's dense parameter count) the hyper-parameters come from
    ``hparams_for_budget`` per layer instead. ``include(qualified_name, module)`` selects the
    layers (default: all). Returns ``model``.
    """
    cls = format_class(name)
    if budget is not None:
        budget = check_float("budget", budget, low=0.0, high=1.0, low_open=True)
        if hp:
            raise ValueError(f"pass either budget or hyper-parameters {sorted(hp)}, not both")
    conv1d = _conv1d_class()
    targets = []
    for qual, module in model.named_modules():
        if isinstance(module, nn.Linear) or (conv1d is not None and isinstance(module, conv1d)):
            if include is None or include(qual, module):
                targets.append((qual, module))
    for qual, module in targets:
        weight = module.weight if isinstance(module, nn.Linear) else module.weight.T
        layer_hp = hp
        if budget is not None:
            out_f, in_f = weight.shape
            layer_hp = cls.hparams_for_budget(in_f, out_f, max(1, int(budget * in_f * out_f)))
        new = approximate(name, weight.detach(), bias=None if module.bias is None else module.bias.detach(),
                          backend=backend, **layer_hp)
        parent_name, _, child = qual.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, new)
    return model
