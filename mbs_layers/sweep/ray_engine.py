"""``run_sweep_ray``: a preset's points measured across a Ray cluster, recorded by the driver alone.

The driver plans the preset (``plan.expand``), drops the points its store already holds
(resume), and hands each group of points that share a shape, dtype, tokens and pass
(baselines first, as the plan orders them; each point carries its baselines) to one worker:
a Ray actor holding a ``SweepSession`` on its node's device (one GPU each where the cluster
has GPUs), so peaks are measured once per worker and a group's speedups come from baselines
measured on the same GPU. Workers return records; only
the driver appends them to the crash-safe JSONL store, one at a time as they arrive, so a
driver killed mid-run loses only points in flight and a re-run resumes.

A point never raises on a worker (``SweepSession.measure`` records OOM and compile errors as
``failed: ...``). A worker that dies (killed, segfault, node lost) has its unfinished points
retried once on a fresh worker; a point whose worker dies twice is recorded as
``failed: worker died: ...`` and the sweep goes on.
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..records import RecordStore, point_key
from .kernel_record import empty_record
from .plan import expand
from .point import KEY_FIELDS, Point
from .presets import Preset, load_preset
from .session import SweepSession

log = logging.getLogger(__name__)

INSTALL_HINT = "--engine ray needs Ray: pip install 'mbs[ray]' (or pip install ray)"
MAX_ATTEMPTS = 2  # a point is tried on at most two workers


def import_ray():
    """The ``ray`` module, or a ``ValueError`` saying how to install it."""
    try:
        import ray
    except ImportError as err:
        raise ValueError(INSTALL_HINT) from err
    return ray


def point_groups(points: list[Point]) -> list[list[Point]]:
    """Consecutive points sharing (shape, dtype, tokens, pass): one worker measures a group."""

    def group(p: Point):
        return p.in_features, p.out_features, p.dtype, p.tokens, p.pass_

    return [list(g) for _, g in itertools.groupby(points, key=group)]


class Worker:
    """One measuring process (a Ray actor): a ``SweepSession`` on its node's device."""

    def __init__(self, preset: Preset, device: str | None, session_factory: Callable | None = None):
        self.session = (session_factory or SweepSession)(preset, device)

    def measure(self, point: Point) -> dict:
        return self.session.measure(point)


@dataclass
class _Slot:
    """A worker actor and the points it was handed, in order."""

    actor: object
    pending: deque = field(default_factory=deque)  # (future, point)


def run_sweep_ray(
    preset: str | Path,
    store: str | Path,
    *,
    address: str | None = None,
    device: str | None = None,
    workers: int | None = None,
    progress: bool = True,
    session_factory: Callable | None = None,
    init_kwargs: dict | None = None,
) -> Path:
    """Measure ``preset`` on a Ray cluster into the JSONL ``store``; returns the store's path.

    ``address``: ``auto`` (a running cluster), ``HOST:PORT``, or None to start a local one.
    ``device``: the workers' torch device type (default: ``cuda`` when the cluster has GPUs,
    else ``cpu``). ``workers``: how many measuring processes (default: one per GPU, or one per
    two CPUs on a CPU-only cluster). Each point already in ``store`` (any device) is skipped.
    ``session_factory(preset, device)`` replaces ``SweepSession`` (for tests).
    """
    ray = import_ray()
    from tqdm.auto import tqdm

    spec = load_preset(preset)
    records = RecordStore(store)
    if not ray.is_initialized():
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False, **(init_kwargs or {}))
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    device = device or ("cuda" if gpus else "cpu")
    count = workers or (gpus or max(1, int(resources.get("CPU", 1)) // 2))
    actor_options = {"num_gpus": 1, "num_cpus": 0} if gpus else {"num_cpus": 1}
    remote_worker = ray.remote(max_restarts=0, max_task_retries=0, **actor_options)(Worker)

    done = {point_key(r, KEY_FIELDS) for r in records}
    points = expand(spec, device)
    todo = [p for p in points if p.key not in done]
    log.info(
        "ray sweep %s: %d points, %d already in %s, %d workers",
        spec.name,
        len(points),
        len(points) - len(todo),
        records.path,
        count,
    )

    def new_slot() -> _Slot:
        return _Slot(remote_worker.remote(spec, device, session_factory))

    slots = [new_slot() for _ in range(min(count, max(1, len(todo))))]
    attempts: Counter = Counter()
    per_node: Counter = Counter()
    queue = deque(point_groups(todo))

    def submit(slot: _Slot, group: list[Point]) -> None:
        for point in group:
            attempts[point.key] += 1
            slot.pending.append((slot.actor.measure.remote(point), point))

    def fill() -> None:
        # a worker takes a new group once it has nothing left: groups keep their baselines
        for slot in slots:
            if not slot.pending and queue:
                submit(slot, queue.popleft())

    # the driver is the store's only writer: a second sweep on it fails at once
    with (
        records.exclusive(),
        tqdm(
            total=len(points),
            initial=len(points) - len(todo),
            disable=not progress,
            desc=f"ray sweep {spec.name}",
            unit="pt",
        ) as bar,
    ):
        fill()
        while any(slot.pending for slot in slots):
            heads = {slot.pending[0][0]: slot for slot in slots if slot.pending}
            ready, _ = ray.wait(list(heads), num_returns=1)
            slot = heads[ready[0]]
            future, point = slot.pending.popleft()
            try:
                record = ray.get(future)
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as err:
                _replace_dead(slot, point, err, attempts, queue, records, new_slot, bar)
                fill()
                continue
            records.append(record)
            per_node[record.get("hostname")] += 1
            bar.set_postfix_str(" ".join(f"{h}:{n}" for h, n in sorted(per_node.items())), refresh=False)
            bar.update()
            fill()
    return records.path


def _replace_dead(
    slot: _Slot, point: Point, err: BaseException, attempts: Counter, queue: deque, records: RecordStore, new_slot, bar
) -> None:
    """A worker died: retry its unfinished points once on a fresh worker, record the rest failed."""
    unfinished = [point, *(p for _, p in slot.pending)]
    slot.pending.clear()
    slot.actor = new_slot().actor
    retry = [p for p in unfinished if attempts[p.key] < MAX_ATTEMPTS]
    reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
    for p in unfinished:
        if p not in retry:
            records.append({**empty_record(p, "unknown", {}, None), "status": f"failed: worker died: {reason}"})
            bar.update()
    if retry:
        queue.appendleft(retry)
    log.warning(
        "a ray worker died (%s); %d point(s) retried, %d recorded failed",
        type(err).__name__,
        len(retry),
        len(unfinished) - len(retry),
    )
