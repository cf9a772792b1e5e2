"""mbs_layers: structured linear layers with exact counts, optimal projections and fast backends.

    import mbs_layers as mbs
    layer = mbs.build("monarch", 1024, 1024, nblocks=4)
    layer = mbs.approximate("lowrank", weight, rank=64)
"""
from __future__ import annotations

from . import formats  # noqa: F401  (registers every format)
from .base import FORMATS, StructuredLinear, register_format
from .replace import replace_linears
from .validation import check_choice

__all__ = ["FORMATS", "StructuredLinear", "approximate", "build", "register_format", "replace_linears"]


def format_class(name: str) -> type[StructuredLinear]:
    """The layer class registered under ``name``; ``ValueError`` listing the names otherwise."""
    check_choice("name", name, sorted(FORMATS))
    return FORMATS[name]


def build(name: str, in_features: int, out_features: int, *, bias: bool = True, dtype=None,
          device=None, backend: str = "auto", **hp) -> StructuredLinear:
    """A freshly initialised layer of format ``name`` (see DESIGN.md for the hyper-parameters)."""
    return format_class(name)(in_features, out_features, bias=bias, dtype=dtype, device=device,
                              backend=backend, **hp)


def approximate(name: str, weight, *, bias=None, backend: str = "auto", X=None, **hp) -> StructuredLinear:
    """The best approximation of a dense (out, in) ``weight`` in format ``name``.

    ``X`` (tokens, in): calibration activations; data-aware formats then minimise ‖X (W − Ŵ)ᵀ‖.
    """
    return format_class(name).from_dense(weight, bias=bias, backend=backend, X=X, **hp)
