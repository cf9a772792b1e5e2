"""``StructuredLinear``: the contract every weight format implements (docs/library.md).

A format subclass supplies
  * ``name`` and ``hparam_names`` (class attributes) and ``_check_hparams`` (validation +
    defaults, raising ``ValueError`` naming the parameter; the public ``check_hparams``
    refuses unknown names first and then calls it),
  * ``count_params`` (a formula), ``hparam_grid`` (candidate hyper-parameters for budget
    search), ``_init_weights``/``_forward_torch``/``dense_weight``/``forward_flops``
    (and ``flops_unseen_by_torch`` where the reference multiplies through torch.sparse),
  * ``_project`` (best approximation of a dense weight, filling the layer's parameters),
  * optionally ``exact_projection = False`` where ``_project`` is an iterative solver.
The base class handles bias, leading batch dims, backend dispatch and the budget search.
docs/architecture.md has the checklist for adding a format.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from typing import Any, ClassVar

import torch
from torch import nn

from . import backends
from .registry import FORMATS, register_format

__all__ = ["FORMATS", "StructuredLinear", "register_format"]  # format modules import these from here
from .validation import check_choice, check_finite_float, check_int


def check_activations(X: object, in_features: int) -> torch.Tensor:
    """``X`` must be a finite floating (tokens, in_features) tensor with tokens >= 1."""
    shape = tuple(getattr(X, "shape", ()))
    if not isinstance(X, torch.Tensor) or X.dim() != 2 or X.shape[1] != in_features or X.shape[0] < 1:
        raise ValueError(
            f"X must be a 2-D (tokens, in_features={in_features}) tensor of calibration "
            f"activations, got {shape if isinstance(X, torch.Tensor) else type(X).__name__}"
        )
    if not X.is_floating_point():
        raise ValueError(f"X must be a floating tensor: got dtype={X.dtype}, allowed float16/bfloat16/float32/float64")
    if not torch.isfinite(X).all():
        raise ValueError("X must be finite: allowed no NaN or inf entries")
    return X


class StructuredLinear(nn.Module):
    """Drop-in replacement for ``nn.Linear`` whose weight has a structure."""

    name: ClassVar[str] = ""
    hparam_names: ClassVar[tuple[str, ...]] = ()
    # True where ``approximate`` is the closed-form optimum, so projecting a matrix already in
    # the format gives it back (to float64 round-off; the contract test checks this). False
    # for iterative solvers (BLAST), which only have to come close.
    exact_projection: ClassVar[bool] = True
    # False where the fit searches for a sparse factor (DSFormer, CoSpaDi): a combinatorial
    # problem, so even a matrix already in the format is only approximated (a local optimum).
    recovers_own_format: ClassVar[bool] = True
    # True where ``_project(weight, X)`` uses calibration activations X (tokens, in) to minimise
    # the output error ‖X (W − Ŵ)ᵀ‖ (or the paper's proxy of it); False: ``_project(weight)``.
    data_aware: ClassVar[bool] = False

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool = True,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        backend: str = "auto",
        **hp: Any,
    ) -> None:
        super().__init__()
        self.in_features = check_int("in_features", in_features, low=1)
        self.out_features = check_int("out_features", out_features, low=1)
        check_choice("backend", backend, backends.allowed_backends(type(self)))
        if not isinstance(bias, bool):
            raise ValueError(f"bias must be True or False, got {bias!r}")
        self.backend = backend
        self.hp = self.check_hparams(self.in_features, self.out_features, **hp)
        self._init_weights(dtype=dtype, device=device)
        if bias:
            bound = 1.0 / math.sqrt(self.in_features)
            self.bias = nn.Parameter(torch.empty(self.out_features, dtype=dtype, device=device).uniform_(-bound, bound))
        else:
            self.register_parameter("bias", None)

    # ----- what a format implements -------------------------------------------------
    @classmethod
    def check_hparams(cls, in_features: int, out_features: int, **hp: Any) -> dict[str, Any]:
        """Validated hyper-parameters with defaults filled in; ``ValueError`` otherwise."""
        unknown = sorted(set(hp) - set(cls.hparam_names))
        if unknown:
            raise ValueError(f"{cls.name} got unknown hyper-parameter(s) {unknown}: allowed {list(cls.hparam_names)}")
        return cls._check_hparams(in_features, out_features, **hp)

    @classmethod
    def _check_hparams(cls, in_features: int, out_features: int, **hp: Any) -> dict[str, Any]:
        """The format's own validation (called by ``check_hparams`` once unknown names are
        refused): every hyper-parameter checked with ``mbs_layers.validation``, defaults filled."""
        raise NotImplementedError

    @classmethod
    def count_params(cls, in_features: int, out_features: int, **hp: Any) -> int:
        """Stored weight values for these hyper-parameters (bias excluded)."""
        raise NotImplementedError

    @classmethod
    def hparam_grid(cls, in_features: int, out_features: int) -> Iterable[dict[str, Any]]:
        """Valid hyper-parameter settings spanning the format's parameter range."""
        raise NotImplementedError

    def _init_weights(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> None:
        """Create the weight parameters, scaled so ``dense_weight`` has ~1/in variance."""
        raise NotImplementedError

    def _forward_torch(self, x2d: torch.Tensor) -> torch.Tensor:
        """Reference ``x2d @ W.T`` (no bias) in plain PyTorch ops, factored."""
        raise NotImplementedError

    def dense_weight(self) -> torch.Tensor:
        """The (out, in) matrix this layer applies."""
        raise NotImplementedError

    def forward_flops(self, tokens: int) -> int:
        """FLOPs (2 per multiply-add) of one forward over ``tokens`` rows, as executed."""
        raise NotImplementedError

    def flops_unseen_by_torch(self, tokens: int) -> int:
        """The part of ``forward_flops`` that torch's ``FlopCounterMode`` cannot count in the
        reference (products through ``torch.sparse`` ops); 0 where it sees every product.
        The contract test checks ``counted + unseen == forward_flops``."""
        return 0

    @torch.no_grad()
    def _project(self, weight: torch.Tensor) -> None:
        """Fill the parameters with the best approximation of ``weight`` (out, in).

        A ``data_aware`` format takes ``_project(weight, X=None)`` with X validated by ``from_dense``.
        """
        raise NotImplementedError

    # ----- the contract -------------------------------------------------------------
    @property
    def hparams(self) -> dict[str, Any]:
        """The layer's hyper-parameters (as ``build``/``approximate`` take them)."""
        return dict(self.hp)

    def param_count(self) -> int:
        return int(self.count_params(self.in_features, self.out_features, **self.hp))

    def storage_bytes(self) -> int:
        """Bytes of weight values (+ indices/metadata where a format has them), bias excluded."""
        return self.param_count() * self.weight_dtype.itemsize

    @property
    def weight_dtype(self) -> torch.dtype:
        return next(p.dtype for n, p in self.named_parameters() if n != "bias")

    @classmethod
    def budget_preference(cls, in_features: int, out_features: int, hp: dict[str, Any]) -> tuple[float, ...]:
        """Sort key among settings that fit a budget, compared before their parameter count
        (larger is preferred). Default: none, so the largest count wins; Kronecker ranks balanced
        factor splits first."""
        return ()

    @classmethod
    def hparam_flops(cls, in_features: int, out_features: int, tokens: int, **hp: Any) -> int:
        """``forward_flops(tokens)`` of a layer with ``hp``, without allocating its weights (meta device)."""
        return cls(in_features, out_features, bias=False, device="meta", **hp).forward_flops(tokens)

    @classmethod
    def hparams_for_budget(
        cls, in_features: int, out_features: int, params: int, *, allow_more_flops: bool = False
    ) -> dict[str, Any]:
        """The preferred setting whose ``count_params`` fits ``params``: highest
        ``budget_preference``, then the largest count. Settings whose forward costs more FLOPs than
        the dense layer (over a square batch of max(in, out) tokens) are skipped unless
        ``allow_more_flops``."""
        check_int("params", params, low=1)
        grid = list(cls.hparam_grid(in_features, out_features))
        counts = [cls.count_params(in_features, out_features, **hp) for hp in grid]
        fitting = sorted(
            (i for i, c in enumerate(counts) if c <= params),
            reverse=True,
            key=lambda i: (cls.budget_preference(in_features, out_features, grid[i]), counts[i]),
        )
        if not fitting:
            if not counts:
                raise ValueError(
                    f"{cls.name} has no setting for in_features={in_features}, "
                    f"out_features={out_features}: see its hyper-parameters' constraints"
                )
            raise ValueError(
                f"params={params} is below the smallest {cls.name} layer for "
                f"({out_features}, {in_features}): allowed params >= {min(counts, default=None)}"
            )
        tokens = max(in_features, out_features)
        dense_flops = 2 * tokens * in_features * out_features
        for i in fitting:
            if allow_more_flops or cls.hparam_flops(in_features, out_features, tokens, **grid[i]) <= dense_flops:
                return grid[i]
        raise ValueError(
            f"params={params}: every {cls.name} layer for ({out_features}, {in_features}) within it costs "
            f"more FLOPs than dense; allowed: allow_more_flops=True, or a smaller params"
        )

    @classmethod
    def from_dense(
        cls,
        weight: torch.Tensor,
        *,
        bias: torch.Tensor | None = None,
        backend: str = "auto",
        X: torch.Tensor | None = None,
        **hp: Any,
    ) -> StructuredLinear:
        """The best approximation of a dense (out, in) ``weight`` in this format.

        ``X`` (tokens, in): calibration activations, validated here; data-aware formats
        (``data_aware = True``) minimise ‖X (W − Ŵ)ᵀ‖, the others warn and ignore it.
        """
        if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
            raise ValueError(f"weight must be a 2-D (out, in) tensor, got {getattr(weight, 'shape', weight)!r}")
        if bias is not None and (not isinstance(bias, torch.Tensor) or bias.shape != weight.shape[:1]):
            raise ValueError(f"bias must be a tensor of shape ({weight.shape[0]},) or None")
        for name, tensor in (("weight", weight), ("bias", bias)):
            check_finite_float(name, tensor)
        out_f, in_f = weight.shape
        if X is not None:
            X = check_activations(X, in_f).to(weight.device)
            if not cls.data_aware:
                warnings.warn(
                    f"format {cls.name} has no data-aware projection; X is ignored", UserWarning, stacklevel=3
                )
                X = None
        layer = cls(in_f, out_f, bias=bias is not None, dtype=weight.dtype, device=weight.device, backend=backend, **hp)
        layer._project(weight.detach(), **({} if X is None else {"X": X.detach()}))
        if bias is not None:
            with torch.no_grad():
                layer.bias.copy_(bias)
        return layer

    def resolved_backend(self, x: torch.Tensor | None = None) -> str:
        """The backend ``forward`` uses for ``x`` (default: a one-row input on the layer's device)."""
        if x is None:
            p = next(self.parameters())
            x = torch.empty(1, self.in_features, dtype=p.dtype, device=p.device)
        return backends.resolve(self, x.reshape(-1, self.in_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"input's last dimension must be in_features={self.in_features}, got shape {tuple(x.shape)}"
            )
        lead = x.shape[:-1]
        x2d = x.reshape(-1, self.in_features)
        self.last_backend = backends.resolve(self, x2d)
        y: torch.Tensor = backends.forward_impl(self, self.last_backend)(self, x2d)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, self.out_features)

    @torch.no_grad()
    def merged_dense_weight(self) -> torch.Tensor:
        """``dense_weight()`` computed once per state of the parameters (no autograd).

        Used by ``auto`` where the tuning table found the pre-merged dense product faster.
        """
        state = tuple((p.data_ptr(), p._version) for n, p in self.named_parameters() if n != "bias")
        if getattr(self, "_merged", (None,))[0] != state:
            self._merged = (state, self.dense_weight().detach())
        return self._merged[1]

    def extra_repr(self) -> str:
        hp = ", ".join(f"{k}={v}" for k, v in self.hp.items())
        ran = getattr(self, "last_backend", None)
        shown = self.backend if self.backend != "auto" or ran is None else f"auto (last ran: {ran})"
        if ran == backends.MERGED:
            shown = "auto (last ran: merged, the pre-merged dense weight was faster here)"
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, backend={shown}" + (f", {hp}" if hp else "")
        )
