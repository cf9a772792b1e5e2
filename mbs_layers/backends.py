"""Backend registry: which implementations of a format's forward exist and which one runs.

Every format has the ``torch`` reference backend (its ``_forward_torch`` method). Fast
backends (Triton kernels, cuSPARSELt, cuSPARSE) register themselves here from
``mbs_layers.kernels`` with :func:`register_backend`, keyed by the layer class they serve (a
class, not a string: a typo fails at import, and registering the same (class, backend) twice
is an error naming both functions); formats never branch on backend names. ``auto`` first
asks the tuning table (``mbs_layers.tuning``: the fastest backend measured at this point, or
``MERGED`` — the pre-merged dense weight — where dense was faster and no gradient is needed);
without an entry it runs ``torch`` on CPU and the available fast backend with the highest
priority on CUDA.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch

from . import registry, tuning

MERGED = tuning.MERGED  # the resolved name of "the pre-merged dense weight"

BACKEND_NAMES = ("auto", "torch", "triton", "cusparselt", "cusparse")


@dataclass(frozen=True)
class BackendImpl:
    """One fast implementation of a format's forward.

    ``forward(layer, x2d)`` returns ``x2d @ layer.dense_weight().T`` (no bias) through the
    fast path and must be differentiable (an ``autograd.Function`` or plain torch ops).
    ``unsupported(layer, x2d)`` returns ``None`` when the backend can run this input, else a
    short reason (used by ``auto`` to skip it and by explicit requests to raise).
    """

    forward: Callable
    unsupported: Callable
    priority: int


_REGISTRY: dict[type, dict[str, BackendImpl]] = {}


def triton_runs_on(device: torch.device) -> bool:
    """Triton runs on CUDA, and on CPU tensors under ``TRITON_INTERPRET=1``."""
    if device.type == "cuda":
        return True
    return device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1"


TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def triton_unsupported(layer, x2d) -> str | None:
    """Default ``unsupported`` check for Triton backends: device, dtype, and no mixed dtypes."""
    if not triton_runs_on(x2d.device):
        return f"Triton needs a CUDA tensor (or TRITON_INTERPRET=1 on CPU), got {x2d.device.type}"
    if x2d.dtype not in TRITON_DTYPES:
        return f"dtype={x2d.dtype} is not supported: allowed {list(TRITON_DTYPES)}"
    if x2d.dtype != layer.weight_dtype:
        return f"input dtype={x2d.dtype} differs from the layer's {layer.weight_dtype}: allowed the same dtype"
    return None


def _no_reason(layer, x2d):
    return None


def format_key(fmt) -> type:
    """The layer class a backend table entry is keyed by, from a class, a layer or a format name."""
    if isinstance(fmt, type):
        return fmt
    if isinstance(fmt, str):
        return registry.format_class(fmt)
    return type(fmt)


def register_backend(fmt, backend: str, *, priority: int = 0, unsupported=None):
    """Decorator: register ``fn(layer, x2d) -> y2d`` as ``backend`` for the layer class ``fmt``.

    ``fmt`` is the format's layer class (a registered name is accepted and looked up). The
    table is keyed by the exact class: a subclass gets only the backends registered for it.
    """
    if backend not in BACKEND_NAMES or backend in ("auto", "torch"):
        raise ValueError(f"backend={backend!r} cannot be registered: allowed {list(BACKEND_NAMES[2:])}")
    cls = format_key(fmt)

    def wrap(fn):
        table = _REGISTRY.setdefault(cls, {})
        if backend in table:
            taken = table[backend].forward
            raise ValueError(
                f"backend {backend!r} for {cls.__qualname__} registered twice: by "
                f"{taken.__module__}.{taken.__qualname__} and by {fn.__module__}.{fn.__qualname__}"
            )
        table[backend] = BackendImpl(fn, unsupported or _no_reason, priority)
        return fn

    return wrap


def fast_backends(fmt) -> dict[str, BackendImpl]:
    """The fast backends registered for a format (its class, a layer, or its name), by name."""
    registry.ensure_loaded()
    return dict(_REGISTRY.get(format_key(fmt), {}))


def allowed_backends(fmt) -> list[str]:
    """Backend names a user may request for a format."""
    return ["auto", "torch", *sorted(fast_backends(fmt))]


def registered_pairs() -> list[tuple[type, str]]:
    """Every (layer class, fast backend name) in the table, in registration order."""
    registry.ensure_loaded()
    return [(cls, name) for cls, impls in _REGISTRY.items() for name in impls]


def resolve(layer, x2d: torch.Tensor) -> str:
    """The backend that runs ``layer`` on ``x2d``; raises ``ValueError`` if the requested one can't."""
    requested = layer.backend
    if requested == "torch":
        return "torch"
    impls = fast_backends(type(layer))
    if requested != "auto":
        reason = impls[requested].unsupported(layer, x2d)
        if reason is not None:
            raise ValueError(
                f"backend={requested!r} cannot run {layer.name} here: {reason}; "
                f"allowed backends for this input: {runnable(layer, x2d)}"
            )
        return requested
    choice = tuning.lookup(layer, x2d)
    if choice == MERGED and not torch.is_grad_enabled():
        return MERGED
    if choice == "torch" or (choice in impls and impls[choice].unsupported(layer, x2d) is None):
        return choice
    if x2d.device.type == "cpu":
        return "torch"
    candidates = [(impl.priority, name) for name, impl in impls.items() if impl.unsupported(layer, x2d) is None]
    return max(candidates)[1] if candidates else "torch"


def runnable(layer, x2d) -> list[str]:
    """Backends (besides ``auto``) able to run ``layer`` on ``x2d``."""
    impls = fast_backends(type(layer))
    return ["torch", *sorted(n for n, i in impls.items() if i.unsupported(layer, x2d) is None)]


def forward_impl(layer, backend: str) -> Callable:
    """The callable computing ``x2d @ W.T`` (no bias) for a resolved backend name."""
    if backend == "torch":
        return type(layer)._forward_torch
    if backend == MERGED:
        return _forward_merged
    return fast_backends(type(layer))[backend].forward


def _forward_merged(layer, x2d):
    """``x2d`` times the layer's cached dense weight (auto's choice where dense was faster)."""
    return x2d @ layer.merged_dense_weight().T
