"""The sweep's plan: a :class:`~mbs_layers.sweep.presets.Preset` and a device type -> the points to measure.

Every choice a sweep makes is made here, once, before anything is measured: each format's
hyper-parameters at each budget (``hparams_for_budget``, memoised), the backends to time
(``backends_for``: ``torch`` plus the fast ones on CUDA, or the preset's list) and each
point's two baselines, stored on the point: dense at the same shape (``Point.dense``) and
unstructured sparse at the same parameter count (``Point.unstructured``), each on the backend
``backend="auto"`` would pick (``auto_backend``). The baselines are points of the plan too,
listed before the points compared with them, so measuring in order has their medians first.
Which points' energy is read (``Point.energy``, from the preset's ``energy.points``) is decided
here too (``select_energy``).
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from typing import TYPE_CHECKING

from .. import backends
from ..registry import FORMATS
from .point import Point

if TYPE_CHECKING:  # the plan is handed a preset; it never loads one
    from .presets import Preset

UNSTRUCTURED = "unstructured"  # the comparator at the same parameter count


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


def budget_hparams(name: str, n_in: int, n_out: int, budget: float) -> dict:
    """The format's hyper-parameters at ``budget`` (a fraction of dense params; dense ignores it)."""
    fraction = 1.0 if name == "dense" else budget
    return hparams_for_budget(name, n_in, n_out, max(1, int(fraction * n_in * n_out)))


def auto_backend(format_name: str, device_type: str) -> str:
    """The backend ``auto`` prefers for a format on a device type (ignoring per-input limits)."""
    impls = backends.fast_backends(format_name)
    if device_type == "cpu" or not impls:
        return "torch"
    return max((impl.priority, name) for name, impl in impls.items())[1]


def backends_for(format_name: str, device_type: str, requested: list[str] | None) -> list[str]:
    """Backends to time for a format: ``torch`` plus fast ones (CUDA only) or the preset's list."""
    fast = sorted(backends.fast_backends(format_name))
    if requested is None:
        return ["torch", *(fast if device_type == "cuda" else [])]
    return [b for b in requested if b == "torch" or b in fast]


def selected_formats(preset: Preset) -> list[str]:
    """Formats the preset asks for, dense first (parse_preset has checked the names)."""
    names = sorted(FORMATS) if preset.formats is None else list(preset.formats)
    return ["dense", *[n for n in names if n != "dense"]]


def dense_baseline(point: Point, device_type: str) -> Point:
    """Dense at the same shape, tokens, dtype and pass (baselines not yet attached)."""
    return replace(
        point,
        format="dense",
        hparams={},
        backend=auto_backend("dense", device_type),
        skip_reason=None,
        dense=None,
        unstructured=None,
    )


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
    return replace(
        point,
        format=UNSTRUCTURED,
        hparams=hp,
        backend=auto_backend(UNSTRUCTURED, device_type),
        skip_reason=None,
        dense=None,
        unstructured=None,
    )


def format_points(preset: Preset, name: str, proto: Point, device_type: str) -> list[Point]:
    """Points of one format at every budget (one skipped point where no setting fits)."""
    n_in, n_out = proto.in_features, proto.out_features
    settings = []
    for budget in preset.budgets:  # dense ignores the budget: its duplicates are dropped by expand
        try:
            settings.append((budget_hparams(name, n_in, n_out, budget), None))
        except ValueError as err:
            settings.append(({}, f"no {name} setting fits {budget:g} of dense params: {err}"))
    points = []
    for hp, reason in settings:
        chosen = [auto_backend(name, device_type)] if reason else backends_for(name, device_type, preset.backends)
        points += [Point(name, hp, n_in, n_out, proto.tokens, proto.dtype, b, proto.pass_, reason) for b in chosen]
    return points


class _Baselines:
    """Attaches each point's baselines, one shared Point per key (a baseline has baselines too)."""

    def __init__(self, device_type: str):
        self.device_type = device_type
        self.planned: dict[str, Point] = {}

    def attach(self, point: Point) -> Point:
        """``point`` (or the point already planned with its key) with ``dense``/``unstructured`` set."""
        if point.key in self.planned:
            return self.planned[point.key]
        self.planned[point.key] = point
        point.dense = self._resolve(dense_baseline(point, self.device_type), point)
        unstructured = unstructured_baseline(point, self.device_type)
        point.unstructured = None if unstructured is None else self._resolve(unstructured, point)
        return point

    def _resolve(self, baseline: Point, point: Point) -> Point:
        return point if baseline.key == point.key else self.attach(baseline)


def expand(preset: Preset, device_type: str) -> list[Point]:
    """Every point of the preset, each group (shape, dtype, tokens, pass) ordered baselines first.

    Dense and the unstructured comparators come before the formats that are compared with
    them, so their medians exist when a format's speedups are computed. No duplicates.
    Each point carries its baselines (``dense``, ``unstructured``: points of this list).
    """
    points, seen = [], set()
    baselines = _Baselines(device_type)

    def add(point):
        if point is not None and point.key not in seen:
            seen.add(point.key)
            points.append(baselines.attach(point))

    for n_in, n_out in preset.shapes:
        for dtype in preset.dtypes:
            for tokens in preset.tokens:
                for pass_ in preset.passes:
                    proto = Point("dense", {}, n_in, n_out, tokens, dtype, "torch", pass_)
                    add(dense_baseline(proto, device_type))
                    group = [
                        p for name in selected_formats(preset) for p in format_points(preset, name, proto, device_type)
                    ]
                    # a skipped point of a format without hyper-parameters has the key of its
                    # runnable one: list runnable points first so the skip is the duplicate
                    group.sort(key=lambda p: p.skip_reason is not None)
                    for point in group:
                        add(None if point.skip_reason else unstructured_baseline(point, device_type))
                    for point in group:
                        add(point)
    select_energy(points, preset.energy_points)
    return points


def select_energy(points: list[Point], selection: dict | None) -> None:
    """Set ``point.energy``: the points ``selection`` (a preset's ``energy_points``) names, and
    their baselines, so every energy speed-up has both of its energies; all points for None."""
    if selection is None:
        return
    for point in points:
        fields = {
            "formats": point.format,
            "shapes": (point.in_features, point.out_features),
            "tokens": point.tokens,
            "dtypes": point.dtype,
            "passes": point.pass_,
            "backends": point.backend,
        }
        point.energy = all(fields[key] in allowed for key, allowed in selection.items())
    for point in [p for p in points if p.energy]:
        for baseline in (point.dense, point.unstructured):
            if baseline is not None:
                baseline.energy = True
