"""The bottom of the house: the table of formats and the entry points that look it up.

``FORMATS`` maps a format's name to its layer class. Format modules fill it with the
:func:`register_format` decorator; :func:`build` and :func:`approximate` are the two ways a
user gets a layer. This module imports nothing else from ``mbs_layers`` (only the argument
checks), so every other module may import it.

Loading: the package's ``__init__`` installs a loader (:func:`set_loader`) that imports every
format and kernel module. The first read of ``FORMATS`` (or a backend lookup) runs it once, so
``import mbs_layers`` stays cheap (``mbs --help`` never imports torch) while any lookup sees
every format and backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any, TypeVar

from .validation import check_choice

if TYPE_CHECKING:  # type names only; base imports this module, not the other way round
    import torch

    from .base import StructuredLinear

_loader: Callable[[], None] | None = None


def set_loader(loader: Callable[[], None]) -> None:
    """Install the function that imports every format and kernel module (run at most once)."""
    global _loader
    _loader = loader


def ensure_loaded() -> None:
    """Run the installed loader once; later calls (and calls while it runs) do nothing."""
    global _loader
    loader, _loader = _loader, None
    if loader is not None:
        loader()


class FormatTable(MutableMapping[str, "type[StructuredLinear]"]):
    """``name -> layer class``, a dict whose reads first load every registered format."""

    def __init__(self) -> None:
        self._classes: dict[str, type[StructuredLinear]] = {}

    def __getitem__(self, name: str) -> type[StructuredLinear]:
        ensure_loaded()
        return self._classes[name]

    def __setitem__(self, name: str, cls: type[StructuredLinear]) -> None:
        self._classes[name] = cls

    def __delitem__(self, name: str) -> None:
        del self._classes[name]

    def __iter__(self) -> Iterator[str]:
        ensure_loaded()
        return iter(dict(self._classes))

    def __len__(self) -> int:
        ensure_loaded()
        return len(self._classes)

    def __contains__(self, name: object) -> bool:
        ensure_loaded()
        return name in self._classes

    def __repr__(self) -> str:
        return repr(dict(self))


FORMATS = FormatTable()

C = TypeVar("C", bound="type[StructuredLinear]")


def register_format(cls: C) -> C:
    """Class decorator: add a format to ``FORMATS`` under ``cls.name``; a name taken twice is an error."""
    taken = FORMATS._classes.get(cls.name)
    if taken is not None:
        raise ValueError(
            f"format name {cls.name!r} registered twice: by {taken.__module__}.{taken.__qualname__} "
            f"and by {cls.__module__}.{cls.__qualname__}"
        )
    FORMATS[cls.name] = cls
    return cls


def format_class(name: str) -> type[StructuredLinear]:
    """The layer class registered under ``name``; ``ValueError`` listing the names otherwise."""
    check_choice("name", name, sorted(FORMATS))
    return FORMATS[name]


def build(
    name: str,
    in_features: int,
    out_features: int,
    *,
    bias: bool = True,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    backend: str = "auto",
    **hp: Any,
) -> StructuredLinear:
    """A freshly initialised layer of format ``name`` (hyper-parameters: docs/formats.md)."""
    return format_class(name)(in_features, out_features, bias=bias, dtype=dtype, device=device, backend=backend, **hp)


def approximate(
    name: str,
    weight: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    backend: str = "auto",
    X: torch.Tensor | None = None,
    **hp: Any,
) -> StructuredLinear:
    """The best approximation of a dense (out, in) ``weight`` in format ``name``.

    ``X`` (tokens, in): calibration activations; data-aware formats then minimise ‖X (W − Ŵ)ᵀ‖,
    the others warn that they ignore it.
    """
    return format_class(name).from_dense(weight, bias=bias, backend=backend, X=X, **hp)
