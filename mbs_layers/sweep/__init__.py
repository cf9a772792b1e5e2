"""Kernel sweeps: presets expanded into points, each timed on the device and recorded.

``run_sweep(preset, store)`` is the entry point (``mbs sweep`` and ``pytest bench/`` use the
same pieces): ``presets`` expands a YAML preset into :class:`~mbs_layers.sweep.point.Point`s,
``session.SweepSession`` builds, checks, times and records each one (``timer``, ``peaks``,
``nvml``, ``record``), and ``runner`` appends the records to a resumable JSONL store.
"""
from .runner import run_sweep

__all__ = ["run_sweep"]
