"""One point made concrete on a device: the layer, its inputs, the timed call and the checks.

``fwd`` times inference (``torch.no_grad``); ``fwd_bwd`` times the forward plus the gradients
w.r.t. the input and every parameter (``torch.autograd.grad``, so nothing accumulates between
repeats). Layers are built without bias so the timed work is exactly what ``forward_flops``
counts. :func:`counts` is what one call computes and moves: ``flops`` as the layer executes
them (``forward_flops``; x3 for forward+backward: each product in the forward has two of the
same size in the backward), the *actual* count for 2:4 and other sparse formats; ``min_bytes``
assumes every operand crosses memory exactly once per pass (perfect fusion), the roofline's
lower bound.
"""

from __future__ import annotations

import torch

from .. import backends, build
from .point import BACKWARD_FACTOR, Point

# Normwise relative error allowed between a fast backend and the torch reference.
TOLERANCE = {"float32": 5e-3, "float16": 2e-2, "bfloat16": 5e-2}


def counts(layer, tokens: int, pass_: str) -> dict:
    """``param_count, storage_bytes, flops, min_bytes`` of one pass over ``tokens`` rows."""
    itemsize = layer.weight_dtype.itemsize
    weights, params = layer.storage_bytes(), layer.param_count()
    x, y = tokens * layer.in_features * itemsize, tokens * layer.out_features * itemsize
    forward = weights + x + y
    # backward reads W, x, dy and writes dx, dW
    min_bytes = forward if pass_ == "fwd" else forward + weights + 2 * x + y + params * itemsize
    return {
        "param_count": params,
        "storage_bytes": weights,
        "flops": BACKWARD_FACTOR[pass_] * int(layer.forward_flops(tokens)),
        "min_bytes": min_bytes,
    }


class Workload:
    """Layer + inputs for a point; raises ``ValueError`` if the format/backend cannot run it."""

    def __init__(self, point: Point, device: torch.device):
        self.point, self.device = point, device
        dtype = getattr(torch, point.dtype)
        self.layer = build(
            point.format,
            point.in_features,
            point.out_features,
            bias=False,
            dtype=dtype,
            device=device,
            backend=point.backend,
            **point.hparams,
        )
        self.x = torch.randn(point.tokens, point.in_features, dtype=dtype, device=device)
        backends.resolve(self.layer, self.x)  # ValueError with the reason if the backend cannot run x
        self.gy = None
        if point.pass_ == "fwd_bwd":
            self.x.requires_grad_(True)
            self.gy = torch.randn(point.tokens, point.out_features, dtype=dtype, device=device)

    def _outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.gy is None:
            with torch.no_grad():
                return (self.layer(x),)
        y = self.layer(x)
        params = [p for p in self.layer.parameters() if p.requires_grad]
        return (y, *torch.autograd.grad(y, [x, *params], self.gy))

    def run(self) -> tuple[torch.Tensor, ...]:
        """The timed call."""
        return self._outputs(self.x)

    def matches_reference(self) -> bool:
        """Fast backend == torch reference (outputs, and gradients for fwd_bwd) on fresh input."""
        x = torch.randn_like(self.x).requires_grad_(self.x.requires_grad)
        fast = self._outputs(x)
        requested, self.layer.backend = self.layer.backend, "torch"
        try:
            reference = self._outputs(x)
        finally:
            self.layer.backend = requested
        tol = TOLERANCE[self.point.dtype]
        return all(
            bool(torch.isfinite(f).all())
            and torch.linalg.vector_norm((f - r).double()) <= tol * torch.linalg.vector_norm(r.double()) + 1e-30
            for f, r in zip(fast, reference)
        )

    def operand_bytes(self) -> int:
        tensors = [*self.layer.parameters(), *self.layer.buffers(), self.x]
        tensors += [self.gy] if self.gy is not None else []
        return sum(t.numel() * t.element_size() for t in tensors)

    def peak_memory_bytes(self) -> int | None:
        """Operands + the most memory one call allocates on top (CUDA only; None on CPU)."""
        if self.device.type != "cuda":
            return None
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        before = torch.cuda.memory_allocated(self.device)
        self.run()
        torch.cuda.synchronize(self.device)
        return torch.cuda.max_memory_allocated(self.device) - before + self.operand_bytes()
