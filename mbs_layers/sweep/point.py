"""A sweep point: one (format, hyper-parameters, shape, tokens, dtype, backend, pass) to time.

Points are pure data, so presets expand into them without touching a device, and their
``key`` matches :func:`mbs_layers.records.point_key` of the record they produce (resume).
Every point is compared with two baselines measured in the same run: dense at the same
shape, and unstructured sparse at the same parameter count, each on the backend
``backend="auto"`` would pick.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cache, cached_property

from .. import backends
from ..records import point_key
from ..registry import FORMATS

KEY_FIELDS = ("format", "hparams", "in_features", "out_features", "tokens", "dtype", "backend", "pass")
PASSES = ("fwd", "fwd_bwd")
DTYPES = ("float32", "float16", "bfloat16")
UNSTRUCTURED = "unstructured"


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

    def identity(self) -> dict:
        """The record keys that identify this point (``KEY_FIELDS``)."""
        return {"format": self.format, "hparams": dict(self.hparams), "in_features": self.in_features,
                "out_features": self.out_features, "tokens": self.tokens, "dtype": self.dtype,
                "backend": self.backend, "pass": self.pass_}

    @cached_property
    def key(self) -> str:
        return point_key(self.identity(), KEY_FIELDS)

    def __str__(self) -> str:
        hp = ",".join(f"{k}={v}" for k, v in sorted(self.hparams.items()))
        return (f"{self.format}[{hp}]-{self.in_features}x{self.out_features}-t{self.tokens}-"
                f"{self.dtype}-{self.backend}-{self.pass_}")

    @cached_property
    def param_count(self) -> int | None:
        """The format's parameter count for these hyper-parameters (None if they are invalid)."""
        try:
            return int(FORMATS[self.format].count_params(self.in_features, self.out_features, **self.hparams))
        except (TypeError, ValueError):
            return None


@cache
def _search(format_name: str, in_features: int, out_features: int, params: int) -> tuple[dict | None, str]:
    try:
        return FORMATS[format_name].hparams_for_budget(in_features, out_features, params), ""
    except ValueError as err:
        return None, str(err)


def hparams_for_budget(format_name: str, in_features: int, out_features: int, params: int) -> dict:
    """``FORMATS[format_name].hparams_for_budget``, memoised: a sweep asks the same question once
    per (dtype, tokens, pass) group, and some formats' searches take milliseconds."""
    hp, error = _search(format_name, in_features, out_features, params)
    if hp is None:
        raise ValueError(error)
    return dict(hp)


def auto_backend(format_name: str, device_type: str) -> str:
    """The backend ``auto`` prefers for a format on a device type (ignoring per-input limits)."""
    impls = backends.fast_backends(format_name)
    if device_type == "cpu" or not impls:
        return "torch"
    return max((impl.priority, name) for name, impl in impls.items())[1]


def dense_baseline(point: Point, device_type: str) -> Point:
    """Dense at the same shape, tokens, dtype and pass."""
    return replace(point, format="dense", hparams={}, backend=auto_backend("dense", device_type),
                   skip_reason=None)


def unstructured_baseline(point: Point, device_type: str) -> Point | None:
    """Unstructured sparse with the largest parameter count not above ``point``'s, or None.

    None where unstructured is not registered, for dense itself, or where no setting fits.
    """
    count = point.param_count
    if UNSTRUCTURED not in FORMATS or point.format == "dense" or count is None:
        return None
    try:
        hp = hparams_for_budget(UNSTRUCTURED, point.in_features, point.out_features, count)
    except ValueError:
        return None
    return replace(point, format=UNSTRUCTURED, hparams=hp,
                   backend=auto_backend(UNSTRUCTURED, device_type), skip_reason=None)

