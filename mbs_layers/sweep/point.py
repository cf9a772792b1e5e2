"""A sweep point: one (format, hyper-parameters, shape, tokens, dtype, backend, pass) to time.

Points are pure data that flows from the plan (``plan.py``, which makes every choice) to the
measuring session; their ``key`` matches :func:`mbs_layers.records.point_key` of the record
they produce (resume). ``dense`` and ``unstructured`` are the point's baselines, resolved by
the plan: dense at the same shape and unstructured sparse at the same parameter count (the
point itself where it is its own baseline; ``unstructured`` None where there is none).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from ..records import point_key
from ..registry import FORMATS

KEY_FIELDS = ("format", "hparams", "in_features", "out_features", "tokens", "dtype", "backend", "pass")
PASSES = ("fwd", "fwd_bwd")
# a pass's FLOPs over the forward's: each product of the forward has two of the same size in the backward
BACKWARD_FACTOR = {"fwd": 1, "fwd_bwd": 3}
DTYPES = ("float32", "float16", "bfloat16")


@dataclass
class Point:
    format: str
    hparams: dict
    in_features: int
    out_features: int
    tokens: int
    dtype: str
    backend: str
    pass_: str
    # set when the point cannot be built at all (e.g. no setting fits the budget)
    skip_reason: str | None = field(default=None, compare=False)
    # the baselines the plan resolved (not part of the identity)
    dense: Point | None = field(default=None, compare=False, repr=False)
    unstructured: Point | None = field(default=None, compare=False, repr=False)
    # whether the energy counter is read for this point (the plan applies the preset's energy.points)
    energy: bool = field(default=True, compare=False)

    def identity(self) -> dict:
        """The record keys that identify this point (``KEY_FIELDS``)."""
        return {
            "format": self.format,
            "hparams": dict(self.hparams),
            "in_features": self.in_features,
            "out_features": self.out_features,
            "tokens": self.tokens,
            "dtype": self.dtype,
            "backend": self.backend,
            "pass": self.pass_,
        }

    @cached_property
    def key(self) -> str:
        return point_key(self.identity(), KEY_FIELDS)

    def __str__(self) -> str:
        hp = ",".join(f"{k}={v}" for k, v in sorted(self.hparams.items()))
        return (
            f"{self.format}[{hp}]-{self.in_features}x{self.out_features}-t{self.tokens}-"
            f"{self.dtype}-{self.backend}-{self.pass_}"
        )

    @cached_property
    def param_count(self) -> int | None:
        """The format's parameter count for these hyper-parameters (None if they are invalid)."""
        try:
            return int(FORMATS[self.format].count_params(self.in_features, self.out_features, **self.hparams))
        except (TypeError, ValueError):
            return None
