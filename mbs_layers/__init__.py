"""mbs_layers: structured linear layers with exact counts, optimal projections and fast backends.

    import mbs_layers as mbs
    layer = mbs.build("monarch", 1024, 1024, nblocks=4)
    layer = mbs.approximate("lowrank", weight, rank=64)

Importing the package is cheap (no torch): the public names below are resolved on first use,
and the first look-up in the format table imports every format and kernel module
(:func:`_load_formats_and_backends`), which registers them. docs/architecture.md draws the
order in which the modules depend on each other.
"""

from __future__ import annotations

from typing import Any

from . import registry

__all__ = ["FORMATS", "StructuredLinear", "approximate", "build", "format_class", "register_format", "replace_linears"]


def _load_formats_and_backends() -> None:
    """Import every format module (formats/) and then every kernel module (kernels/), whose
    decorators fill ``FORMATS`` and the backend table."""
    from . import formats, kernels  # noqa: F401


registry.set_loader(_load_formats_and_backends)


def __getattr__(name: str) -> Any:
    """The public names, imported on first use (so ``import mbs_layers`` does not import torch)."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import base, replace

    value = {"StructuredLinear": base.StructuredLinear, "replace_linears": replace.replace_linears}.get(name)
    if value is None:
        value = getattr(registry, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
