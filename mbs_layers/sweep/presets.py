"""Sweep presets: small YAML files (packaged or the user's own) read into a validated :class:`Preset`.

The first stage of a sweep, pure configuration: ``plan.expand`` turns a preset into points.

A preset names shapes (``shapes: [[in, out], ...]`` and/or square ``widths``), ``tokens``,
``dtypes``, ``passes``, parameter ``budgets`` (fractions of dense), ``formats`` and
``backends`` (``all`` or lists), the timer's ``warmup``/``repeats``, optionally the sizes
of the ``peaks`` measurement and the ``energy`` measurement (``mode``: auto | on | off,
``min_window_s``, ``repeats``, and ``points``: the subset of points whose energy is read, by
``formats``/``shapes``/``widths``/``tokens``/``dtypes``/``passes``/``backends``; see
``sweep/energy.py``). See ``presets/*.yaml`` and docs/benchmarking.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from .. import backends
from ..registry import FORMATS
from ..validation import check_choice, check_float, check_int
from .point import DTYPES, PASSES
from .preset_names import PACKAGED
from .timer import DEFAULT_CPU_THREADS

KEYS = (
    "description",
    "shapes",
    "widths",
    "tokens",
    "dtypes",
    "passes",
    "budgets",
    "formats",
    "backends",
    "timer",
    "peaks",
    "energy",
)
ENERGY_MODES = ("auto", "on", "off")
ENERGY_SETTINGS = ("mode", "min_window_s", "repeats", "points")
ENERGY_POINT_KEYS = ("formats", "shapes", "widths", "tokens", "dtypes", "passes", "backends")


@dataclass
class Preset:
    name: str
    description: str
    shapes: list[tuple[int, int]]
    tokens: list[int]
    dtypes: list[str]
    passes: list[str]
    budgets: list[float]
    formats: list[str] | None  # None: every registered format
    backends: list[str] | None  # None: torch plus every fast backend (fast ones on CUDA only)
    warmup: int
    repeats: int
    threads: int = DEFAULT_CPU_THREADS  # torch threads pinned for CPU timings
    gemm_size: int | None = None  # peak-measurement sizes; None: the device's default
    copy_mib: int | None = None
    energy_mode: str = "auto"  # auto: GPU counter on CUDA, nothing on CPU; on: RAPL on CPU too
    energy_min_window_s: float = 1.0
    energy_repeats: int = 3
    # which points' energy is read (field -> allowed values: format, shape, tokens, dtype, pass,
    # backend); None: every point. Energy costs seconds a point, timing milliseconds.
    energy_points: dict | None = None


def load_preset(preset: str | Path) -> Preset:
    """A packaged preset by name (one of ``PACKAGED``) or a YAML file by path."""
    path = Path(preset)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ValueError(f"preset file {str(path)!r} does not exist")
        return parse_preset(path.stem, _yaml(path.read_text(), str(path)))
    check_choice("preset", str(preset), PACKAGED)
    text = resources.files(__package__).joinpath("presets", f"{preset}.yaml").read_text()
    return parse_preset(str(preset), _yaml(text, str(preset)))


def _yaml(text: str, where: str):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(f"preset {where!r} is not valid YAML: {' '.join(str(err).split())}") from None


def _list(spec: dict, key: str, check, default=None, name: str | None = None) -> list:
    """``spec[key]`` as a non-empty list, each value checked; errors name ``name`` (default ``key``)."""
    values = spec.get(key, default)
    if not isinstance(values, list) or not values:
        raise ValueError(f"preset key {name or key!r} must be a non-empty list, got {values!r}")
    return [check(v) for v in values]


def _refuse_unknown(mapping: dict, allowed, where: str) -> None:
    unknown = sorted(set(mapping) - set(allowed))
    if unknown:
        raise ValueError(f"{where} has unknown key(s) {unknown}: allowed {list(allowed)}")


def _names_or_all(spec: dict, key: str, allowed) -> list[str] | None:
    value = spec.get(key, "all")
    if value == "all":
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ValueError(f"preset key {key!r} must be 'all' or a non-empty list of names, got {value!r}")
    unknown = [v for v in value if v not in allowed]
    if unknown:
        raise ValueError(f"preset key {key!r} has unknown name(s) {unknown}: allowed {sorted(allowed)}")
    return value


def parse_preset(name: str, spec) -> Preset:
    """Validate a preset mapping; ``ValueError`` names the offending key."""
    if not isinstance(spec, dict):
        raise ValueError(f"preset {name!r} must be a mapping with keys {list(KEYS)}")
    _refuse_unknown(spec, KEYS, f"preset {name!r}")
    if not isinstance(spec.get("shapes", []), list):
        raise ValueError(
            f"preset key 'shapes' must be a list of [in_features, out_features] pairs, got {spec['shapes']!r}"
        )
    shapes = [_shape(s) for s in spec.get("shapes", [])]
    if "widths" in spec:
        shapes += [(w, w) for w in _list(spec, "widths", lambda v: check_int("widths", v, low=1))]
    if not shapes:
        raise ValueError(f"preset {name!r} needs 'shapes' ([[in, out], ...]) or 'widths'")
    timer, peaks, energy = spec.get("timer", {}), spec.get("peaks", {}), spec.get("energy", {})
    if not all(isinstance(v, dict) for v in (timer, peaks, energy)):
        raise ValueError("preset keys 'timer', 'peaks' and 'energy' must be mappings")

    return Preset(
        name=name,
        description=str(spec.get("description", "")),
        shapes=list(dict.fromkeys(shapes)),
        tokens=_list(spec, "tokens", lambda v: check_int("tokens", v, low=1)),
        dtypes=_list(spec, "dtypes", _choice("dtypes", DTYPES)),
        passes=_list(spec, "passes", _choice("passes", PASSES), default=list(PASSES)),
        budgets=_list(spec, "budgets", lambda v: check_float("budgets", v, low=0.0, high=1.0, low_open=True)),
        formats=_names_or_all(spec, "formats", FORMATS),
        backends=_names_or_all(spec, "backends", set(backends.BACKEND_NAMES) - {"auto"}),
        warmup=check_int("timer.warmup", timer.get("warmup", 3), low=0),
        repeats=check_int("timer.repeats", timer.get("repeats", 20), low=1),
        threads=check_int("timer.threads", timer.get("threads", DEFAULT_CPU_THREADS), low=1),
        gemm_size=peaks.get("gemm_size") and check_int("peaks.gemm_size", peaks["gemm_size"], low=16),
        copy_mib=peaks.get("copy_mib") and check_int("peaks.copy_mib", peaks["copy_mib"], low=1),
        energy_mode=_choice("energy.mode", ENERGY_MODES)(_yaml_word(energy.get("mode", "auto"))),
        energy_min_window_s=check_float(
            "energy.min_window_s", energy.get("min_window_s", 1.0), low=0.0, high=60.0, low_open=True
        ),
        energy_repeats=check_int("energy.repeats", energy.get("repeats", 3), low=1),
        energy_points=_energy_points(energy),
    )


def _energy_points(energy: dict) -> dict | None:
    """``energy.points``: point field -> the values whose energy is read (None: every point)."""
    _refuse_unknown(energy, ENERGY_SETTINGS, "preset key 'energy'")
    if "points" not in energy:
        return None
    spec = energy["points"]
    if not isinstance(spec, dict) or not spec:
        raise ValueError(
            f"preset key 'energy.points' must be a non-empty mapping with keys {list(ENERGY_POINT_KEYS)}, got {spec!r}"
        )
    _refuse_unknown(spec, ENERGY_POINT_KEYS, "preset key 'energy.points'")
    where = lambda key: f"energy.points.{key}"
    checks = {
        "formats": _choice(where("formats"), FORMATS),
        "tokens": lambda v: check_int(where("tokens"), v, low=1),
        "dtypes": _choice(where("dtypes"), DTYPES),
        "passes": _choice(where("passes"), PASSES),
        "backends": _choice(where("backends"), set(backends.BACKEND_NAMES) - {"auto"}),
        "shapes": lambda v: _shape(v, where("shapes")),
        "widths": lambda v: (check_int(where("widths"), v, low=1),) * 2,
    }
    chosen = {key: _list(spec, key, checks[key], name=where(key)) for key in spec}
    shapes = chosen.pop("shapes", []) + chosen.pop("widths", [])
    return {**chosen, **({"shapes": shapes} if shapes else {})}


def _yaml_word(value):
    """YAML 1.1 reads a bare ``on``/``off`` as a boolean: take it as the word that was written."""
    return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value


def _shape(shape, key: str = "shapes") -> tuple[int, int]:
    if not isinstance(shape, (list, tuple)) or len(shape) != 2:
        raise ValueError(f"preset key {key!r} needs [in_features, out_features] pairs, got {shape!r}")
    return check_int(key, shape[0], low=1), check_int(key, shape[1], low=1)


def _choice(key: str, allowed):
    def check(value):
        check_choice(key, value, allowed)
        return value

    return check
