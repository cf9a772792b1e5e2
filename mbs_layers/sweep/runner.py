"""``run_sweep``: a preset's points timed one by one into an append-only, resumable store.

The runner only wires the stages: load the preset (``presets``), plan it (``plan``), drop the
points the store already holds, measure and record each remaining one (``session``), append.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from pathlib import Path

from ..records import RecordStore, point_key
from .energy import NvmlCounter, PowerTrace, power_trace_path
from .plan import expand
from .point import KEY_FIELDS
from .presets import load_preset
from .session import SweepSession

log = logging.getLogger(__name__)


def run_sweep(preset: str | Path, store: str | Path, *, device: str | None = None, progress: bool = True) -> Path:
    """Time every point of ``preset`` and append its kernel record to the JSONL ``store``.

    ``preset`` is a packaged name (one of ``PACKAGED``) or a YAML path. Points
    already in ``store`` for this device (any status) are skipped, so a killed run re-run with the same store
    resumes without duplicates; each record is fsynced as soon as it exists. Where the GPU's
    energy counter is readable, its power draw is sampled into ``<store>.power.jsonl``. ``device=None``
    means CUDA if available, else CPU. Returns the store's path.
    """
    from tqdm.auto import tqdm

    spec = load_preset(preset)
    records = RecordStore(store)
    session = SweepSession(spec, device)
    # only this device's records count as done (and as baselines): a store re-used on
    # another GPU measures every point again there
    done = session.remember(records.records())
    done_keys = {point_key(r, KEY_FIELDS) for r in done}
    points = expand(spec, session.device.type)
    todo = [p for p in points if p.key not in done_keys]
    log.info(
        "sweep %s on %s: %d points, %d already done in %s, %d to measure",
        spec.name,
        session.device_name,
        len(points),
        len(points) - len(todo),
        records.path,
        len(todo),
    )
    trace = (
        PowerTrace(session.energy.counter, power_trace_path(records.path), session.device_name)
        if isinstance(session.energy.counter, NvmlCounter)
        else nullcontext()
    )
    # one writer per store: a second sweep on it fails at once instead of doubling every point
    with (
        records.exclusive(),
        trace,
        tqdm(
            total=len(points),
            initial=len(points) - len(todo),
            disable=not progress,
            desc=f"sweep {spec.name}",
            unit="pt",
        ) as bar,
    ):
        for point in todo:
            bar.set_postfix_str(str(point), refresh=False)
            records.append(session.measure(point))
            bar.update()
    return records.path
