"""Kernel sweeps: presets expanded into points, each timed on the device and recorded.

``run_sweep(preset, store)`` is the entry point (``mbs sweep`` and ``pytest bench/`` use the
same pieces): ``presets`` expands a YAML preset into :class:`~mbs_layers.sweep.point.Point`s,
``session.SweepSession`` builds, checks, times and records each one (``timer``, ``peaks``,
``nvml``, ``record``), and ``runner`` appends the records to a resumable JSONL store.
"""
from __future__ import annotations

from typing import Any

__all__ = ["run_sweep"]


def __getattr__(name: str) -> Any:
    """``run_sweep``, imported on first use so the command line can read presets' names cheaply."""
    if name != "run_sweep":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from .runner import run_sweep

    return run_sweep
