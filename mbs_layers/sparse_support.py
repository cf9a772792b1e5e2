"""Shared machinery of the element-sparse formats (``unstructured``, ``semi24``).

Such a layer stores the kept values of W (out, in) as a flat parameter ``values`` (nnz,)
and their positions as int64 buffers ``rows``/``cols`` in row-major order (so the
(rows, cols) pairs form a coalesced COO index). A format only says how many values it
keeps and how it picks them from a score matrix (:meth:`SparseSupportLinear._select_support`):
the same rule projects a dense weight (scores = magnitudes, optimal) and draws the random
support of a fresh layer (scores = uniform noise).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .base import StructuredLinear


def random_subset(total: int, k: int, device=None) -> torch.Tensor:
    """``k`` distinct flat indices in ``[0, total)``, uniformly at random, sorted; memory O(k)
    (never a ``total``-sized score tensor, except a 1-byte mask when k > total / 2)."""
    if 2 * k > total:
        keep = torch.ones(total, dtype=torch.bool, device=device)
        keep[random_subset(total, total - k, device)] = False
        return keep.nonzero().flatten()
    chosen = torch.empty(0, dtype=torch.long, device=device)
    while chosen.numel() < k:  # the distinct values of uniform draws are a uniform subset
        draws = torch.randint(total, (int(1.2 * (k - chosen.numel())) + 16,), device=device)
        chosen = torch.cat([chosen, draws]).unique()
    return chosen[torch.randperm(chosen.numel(), device=device)[:k]].sort().values


def sorted_topk(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Flat indices of the ``k`` largest entries of ``scores``, in increasing order."""
    return scores.flatten().topk(k, sorted=False).indices.sort().values


def sparse_matmul(x2d: torch.Tensor, rows, cols, values, shape) -> torch.Tensor:
    """``x2d @ W.T`` for W given as a coalesced COO matrix; differentiable in ``x2d`` and ``values``.

    Runs through ``torch.sparse.mm`` (nnz multiply-adds per row of ``x2d``, invisible to
    ``FlopCounterMode``); plain PyTorch, so it is the reference every fast backend is checked against.
    """
    w = torch.sparse_coo_tensor(torch.stack((rows, cols)), values, shape, is_coalesced=True, check_invariants=False)
    return torch.sparse.mm(w, x2d.T).T


class SparseSupportLinear(StructuredLinear):
    """W = M ⊙ V with the support M held as index buffers and V's kept values as a parameter."""

    def nnz(self) -> int:
        """Number of stored values (the parameter count)."""
        return self.param_count()

    def _select_support(self, scores: torch.Tensor) -> torch.Tensor:
        """Sorted flat indices (into the (out, in) matrix) of the positions kept for ``scores``."""
        raise NotImplementedError

    def _random_support(self, device) -> torch.Tensor:
        """The support of a fresh layer: the rule applied to uniform noise (an (out, in) score
        matrix; a format whose rule is "any k positions" overrides this with an O(nnz) draw)."""
        return self._select_support(torch.rand(self.out_features, self.in_features, device=device))

    def _set_support(self, flat: torch.Tensor) -> None:
        self.rows.copy_(flat.div(self.in_features, rounding_mode="floor"))
        self.cols.copy_(flat.remainder(self.in_features))

    def _init_weights(self, dtype=None, device=None):
        nnz, shape = self.nnz(), (self.out_features, self.in_features)
        self.register_buffer("rows", torch.empty(nnz, dtype=torch.long, device=device))
        self.register_buffer("cols", torch.empty(nnz, dtype=torch.long, device=device))
        self._set_support(self._random_support(device))
        # Var(W_ij) = density · Var(V) = 1/in, averaged over all entries of W.
        density = nnz / (shape[0] * shape[1])
        std = 1.0 / math.sqrt(self.in_features * density)
        self.values = nn.Parameter(torch.randn(nnz, dtype=dtype, device=device) * std)

    def _forward_torch(self, x2d):
        return sparse_matmul(x2d, self.rows, self.cols, self.values, (self.out_features, self.in_features))

    def dense_weight(self):
        w = self.values.new_zeros(self.out_features, self.in_features)
        return w.index_put((self.rows, self.cols), self.values)

    def forward_flops(self, tokens):
        return 2 * self.nnz() * tokens

    @classmethod
    def hparam_flops(cls, in_features, out_features, tokens, **hp):
        """2 · tokens · nnz without drawing a support (the budget search asks for every setting)."""
        return 2 * tokens * cls.count_params(in_features, out_features, **hp)

    def flops_unseen_by_torch(self, tokens):
        return self.forward_flops(tokens)  # the reference multiplies through torch.sparse.mm

    @staticmethod
    def projection_scores(weight: torch.Tensor, X: torch.Tensor | None = None) -> torch.Tensor:
        """What the support rule ranks when projecting: |W_ij| (optimal in Frobenius norm). A
        ``data_aware`` format replaces it with a score that also weighs calibration activations X."""
        return weight.abs()

    @torch.no_grad()
    def _project(self, weight, X=None):
        """Keep the positions of largest ``projection_scores`` under the format's rule; kept values
        are W's own. ``X`` reaches here only for ``data_aware`` formats."""
        flat = self._select_support(self.projection_scores(weight, X))
        self._set_support(flat)
        self.values.copy_(weight.flatten()[flat])


def segment_pointers(keys: torch.Tensor, segments: int) -> torch.Tensor:
    """int32 CSR-style pointers (segments + 1,) of sorted ``keys`` in ``range(segments)``."""
    counts = torch.bincount(keys, minlength=segments)
    return torch.cat((counts.new_zeros(1), counts.cumsum(0))).to(torch.int32)


def cached_per_version(layer, attr: str, tensors, build):
    """``build()``, cached on ``layer.<attr>`` until one of ``tensors`` is modified or replaced.

    Fast backends keep derived forms of the weight (index lists, compressed 2:4 weights) this
    way: rebuilt after an optimiser step, a projection or a device move, reused otherwise.
    """
    key = tuple((t.data_ptr(), t._version) for t in tensors)
    cached = getattr(layer, attr, None)
    if cached is None or cached[0] != key:
        cached = (key, build())
        setattr(layer, attr, cached)
    return cached[1]


def kept_values_grad(grad_y: torch.Tensor, x2d: torch.Tensor, rows, cols) -> torch.Tensor:
    """Gradient of the kept values of W in y = x Wᵀ: the dense product grad_yᵀ x gathered on the support.

    One dense GEMM: the sparse backends use it where no sampled (SDDMM) kernel covers every dtype.
    """
    return (grad_y.T @ x2d)[rows, cols]


class KeptValuesLinearFunction(torch.autograd.Function):
    """y = ``forward(x, values)`` for an element-sparse W; a backend supplies the two products.

    grad_x = ``grad_input(grad_y, values)`` (grad_y W through the backend's sparse form);
    the kept values' gradient is :func:`kept_values_grad`.
    """

    @staticmethod
    def forward(ctx, x2d, values, rows, cols, forward, grad_input):
        ctx.save_for_backward(x2d, values, rows, cols)
        ctx.grad_input = grad_input
        return forward(x2d, values)

    @staticmethod
    def backward(ctx, grad_y):
        x2d, values, rows, cols = ctx.saved_tensors
        grad_x = ctx.grad_input(grad_y, values) if ctx.needs_input_grad[0] else None
        grad_values = kept_values_grad(grad_y, x2d, rows, cols) if ctx.needs_input_grad[1] else None
        return grad_x, grad_values, None, None, None, None


def kept_values_linear(layer, x2d, forward, grad_input) -> torch.Tensor:
    """``x2d @ W.T`` of a :class:`SparseSupportLinear` layer through a backend's two products."""
    return KeptValuesLinearFunction.apply(x2d, layer.values, layer.rows, layer.cols, forward, grad_input)
