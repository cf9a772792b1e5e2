"""Kernel sweeps: a preset planned into points, each measured on the device and recorded.

``run_sweep(preset, store)`` is the entry point (``mbs sweep`` and ``pytest bench/`` use the
same pieces). The data flows one way, one module per stage (docs/architecture.md):
``presets`` reads a YAML preset into a ``Preset``; ``plan`` expands it into
:class:`~mbs_layers.sweep.point.Point`s with every choice made (hyper-parameters, backends,
baselines); ``session.SweepSession`` builds, checks and times each one (``workload``,
``timer``, ``energy``) into a measurement; ``kernel_record`` turns that into the record; and
``runner`` wires them, appending the records to a resumable JSONL store.
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
