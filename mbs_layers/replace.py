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
    except Exception:  # noqa: BLE001  (transformers absent or broken: no Conv1D layers to find)
        return None
    return Conv1D


def replace_linears(
    model: nn.Module,
    name: str,
    *,
    budget: float | None = None,
    include: Callable[[str, nn.Module], bool] | None = None,
    backend: str = "auto",
    keep_output_head: bool = True,
    **hp,
) -> nn.Module:
    """Replace ``nn.Linear`` (and GPT-2 ``Conv1D``) modules of ``model`` in place.

    Each replaced layer is ``mbs.approximate(name, W, bias=b, **hp)``; with ``budget`` (a
    fraction in (0, 1] of each layer's dense parameter count) the hyper-parameters come from
    ``hparams_for_budget`` per layer instead. ``include(qualified_name, module)`` selects the
    layers (default: all). Layers whose weight is shared with another module (tied, e.g. an
    output head tied to the input embedding) are always left alone: replacing one copy would
    break the tie and add parameters. The output head (``get_output_embeddings()``, or a
    module named ``lm_head``) is left alone unless ``keep_output_head=False``. Returns ``model``.
    """
    cls = format_class(name)
    if budget is not None:
        budget = check_float("budget", budget, low=0.0, high=1.0, low_open=True)
        if hp:
            raise ValueError(f"pass either budget or hyper-parameters {sorted(hp)}, not both")
    if not isinstance(keep_output_head, bool):
        raise ValueError(f"keep_output_head must be True or False, got {keep_output_head!r}")
    conv1d = _conv1d_class()
    tied = _tied_parameters(model)
    heads = _output_heads(model) if keep_output_head else set()
    targets = []
    for qual, module in model.named_modules():
        if isinstance(module, nn.Linear) or (conv1d is not None and isinstance(module, conv1d)):
            if id(module.weight) in tied or id(module) in heads:
                continue
            if include is None or include(qual, module):
                targets.append((qual, module))
    for qual, module in targets:
        weight = module.weight if isinstance(module, nn.Linear) else module.weight.T
        layer_hp = hp
        if budget is not None:
            out_f, in_f = weight.shape
            layer_hp = cls.hparams_for_budget(in_f, out_f, max(1, int(budget * in_f * out_f)))
        new = approximate(
            name,
            weight.detach(),
            bias=None if module.bias is None else module.bias.detach(),
            backend=backend,
            **layer_hp,
        )
        parent_name, _, child = qual.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, new)
    return model


def _tied_parameters(model: nn.Module) -> set[int]:
    """ids of parameters that more than one module holds."""
    seen: dict[int, int] = {}
    for _, param in model.named_parameters(remove_duplicate=False):
        seen[id(param)] = seen.get(id(param), 0) + 1
    return {pid for pid, n in seen.items() if n > 1}


def _output_heads(model: nn.Module) -> set[int]:
    """ids of the model's output head modules (Hugging Face's output embeddings, or ``lm_head``)."""
    heads = {id(m) for q, m in model.named_modules() if q.rpartition(".")[2] == "lm_head"}
    getter = getattr(model, "get_output_embeddings", None)
    head = getter() if callable(getter) else None
    return heads | ({id(head)} if head is not None else set())
