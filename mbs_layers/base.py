"""``StructuredLinear``: the contract every weight format implements (see DESIGN.md).

A format subclass supplies
  * ``name`` and ``hparam_names`` (class attributes) and ``check_hparams`` (validation +
    defaults, raising ``ValueError`` naming the parameter),
  * ``count_params`` (a formula), ``hparam_grid`` (candidate hyper-parameters for budget
    search), ``_init_weights``/``_forward_torch``/``dense_weight``/``forward_flops``,
  * ``_project`` (best approximation of a dense weight, filling the layer's parameters).
The base class handles bias, leading batch dims, backend dispatch and the budget search.
"""
from __future__ import annotations

import math
from typing import ClassVar, Iterable

import torch
from torch import nn

from . import backends
from .validation import check_choice, check_finite_float, check_int

FORMATS: dict[str, type["StructuredLinear"]] = {}


def register_format(cls):
    """Class decorator: add a format to ``mbs.FORMATS`` under ``cls.name``."""
    if cls.name in FORMATS:
        raise ValueError(f"format name {cls.name!r} registered twice")
    FORMATS[cls.name] = cls
    return cls


class StructuredLinear(nn.Module):
    """Drop-in replacement for ``nn.Linear`` whose weight has a structure."""

    name: ClassVar[str] = ""
    hparam_names: ClassVar[tuple[str, ...]] = ()
    # False where the reference multiplies through sparse ops torch's FlopCounterMode
    # cannot see, so forward_flops is checked against its formula only.
    flops_visible_to_torch: ClassVar[bool] = True
    # True where ``approximate`` is the closed-form optimum (it then recovers any matrix
    # already in the format); False for iterative solvers (BLAST).
    exact_projection: ClassVar[bool] = True

    def __init__(self, in_features, out_features, *, bias=True, dtype=None, device=None,
                 backend="auto", **hp):
        super().__init__()
        self.in_features = check_int("in_features", in_features, low=1)
        self.out_features = check_int("out_features", out_features, low=1)
        check_choice("backend", backend, backends.allowed_backends(self.name))
        if not isinstance(bias, bool):
            raise ValueError(f"bias must be True or False, got {bias!r}")
        self.backend = backend
        self.hp = self.check_hparams(self.in_features, self.out_features, **hp)
        factory = {"dtype": dtype, "device": device}
        self._init_weights(**factory)
        if bias:
            bound = 1.0 / math.sqrt(self.in_features)
            self.bias = nn.Parameter(torch.empty(self.out_features, **factory).uniform_(-bound, bound))
        else:
            self.register_parameter("bias", None)

    # ----- what a format implements -------------------------------------------------
    @classmethod
    def check_hparams(cls, in_features: int, out_features: int, **hp) -> dict:
        """Validated hyper-parameters with defaults filled in; ``ValueError`` otherwise."""
        unknown = sorted(set(hp) - set(cls.hparam_names))
        if unknown:
            raise ValueError(
                f"{cls.name} got unknown hyper-parameter(s) {unknown}: allowed {list(cls.hparam_names)}"
            )
        return cls._check_hparams(in_features, out_features, **hp)

    @classmethod
    def _check_hparams(cls, in_features: int, out_features: int, **hp) -> dict:
        raise NotImplementedError

    @classmethod
    def count_params(cls, in_features: int, out_features: int, **hp) -> int:
        """Stored weight values for these hyper-parameters (bias excluded)."""
        raise NotImplementedError

    @classmethod
    def hparam_grid(cls, in_features: int, out_features: int) -> Iterable[dict]:
        """Valid hyper-parameter settings spanning the format's parameter range."""
        raise NotImplementedError

    def _init_weights(self, dtype=None, device=None) -> None:
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

    @torch.no_grad()
    def _project(self, weight: torch.Tensor) -> None:
        """Fill the parameters with the best approximation of ``weight`` (out, in)."""
        raise NotImplementedError

    # ----- the contract -------------------------------------------------------------
    @property
    def hparams(self) -> dict:
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
    def hparams_for_budget(cls, in_features: int, out_features: int, params: int) -> dict:
        """Hyper-parameters whose ``count_params`` is the largest not above ``params``."""
        check_int("params", params, low=1)
        best, best_count = None, -1
        for hp in cls.hparam_grid(in_features, out_features):
            count = cls.count_params(in_features, out_features, **hp)
            if best_count < count <= params:
                best, best_count = hp, count
        if best is None:
            smallest = min(
                (cls.count_params(in_features, out_features, **hp)
                 for hp in cls.hparam_grid(in_features, out_features)),
                default=None,
            )
            raise ValueError(
                f"params={params} is below the smallest {cls.name} layer for "
                f"({out_features}, {in_features}): allowed params >= {smallest}"
            )
        return best

    @classmethod
    def from_dense(cls, weight: torch.Tensor, *, bias=None, backend="auto", **hp):
        """The best approximation of a dense (out, in) ``weight`` in this format."""
        if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
            raise ValueError(f"weight must be a 2-D (out, in) tensor, got {getattr(weight, 'shape', weight)!r}")
        if bias is not None and (not isinstance(bias, torch.Tensor) or bias.shape != weight.shape[:1]):
            raise ValueError(f"bias must be a tensor of shape ({weight.shape[0]},) or None")
        for name, tensor in (("weight", weight), ("bias", bias)):
            check_finite_float(name, tensor)
        out_f, in_f = weight.shape
        layer = cls(in_f, out_f, bias=bias is not None, dtype=weight.dtype, device=weight.device,
                    backend=backend, **hp)
        layer._project(weight.detach())
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
        y = backends.forward_impl(self, self.last_backend)(self, x2d)
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
        if ran == "merged":
            shown = "auto (last ran: merged, the pre-merged dense weight was faster here)"
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, backend={shown}" + (f", {hp}" if hp else ""))
