"""Shared machinery of the accuracy experiments: budgets, records, the resumable point loop."""

from __future__ import annotations

import math
import re
import traceback
import uuid
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path

import torch

from ..records import ACCURACY_KEYS, RecordStore, point_key
from ..sweep import environment as sweep_env

# The kernel sweep's budget -> hyper-parameters rule: accuracy and kernel records join on the
# hparams it gives, so both sides must use this one function (through ``representable_hparams``).
from ..sweep.plan import budget_hparams

# Fractions of a layer's dense parameter count, ~1% .. 100% (the thesis's range).
BUDGETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
# A coarser sweep for ``mbs project`` (under a minute at n = 1024 on 2 cores). It stops at
# 50%: at 100% every format but 2:4 has grown to dense size, and BLAST's iterative projection
# alone would take ~2 min there (rank ~490); ``mbs accuracy`` presets cover 75% and 100%.
QUICK_BUDGETS = (0.01, 0.03, 0.1, 0.25, 0.5)


class CannotRepresent(ValueError):
    """The format has no setting for this shape and budget (``hparams_for_budget`` found none).

    The one error that records a point as ``skipped`` (never retried); every other exception,
    another ``ValueError`` included, is a failure and the point is retried on the next run.
    """


def representable_hparams(name: str, in_features: int, out_features: int, budget: float) -> dict:
    """``budget_hparams``, raising :class:`CannotRepresent` where the format has no setting."""
    try:
        return budget_hparams(name, in_features, out_features, budget)
    except ValueError as exc:
        raise CannotRepresent(
            f"no {name} setting for {out_features}x{in_features} at budget {budget:g}: {exc}"
        ) from exc


def pick_device(device: str | None = None) -> torch.device:
    """``device``, or cuda when available, else cpu."""
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def format_names(selected: Iterable[str] | None = None) -> list[str]:
    """The registered formats (``mbs.FORMATS``), or ``selected`` validated against them."""
    from .. import FORMATS, format_class

    if selected is None:
        return sorted(FORMATS)
    return [format_class(name).name for name in selected]


def point_budgets(name: str, budgets: Iterable[float]) -> tuple[float, ...]:
    """The budgets to run format ``name`` at: dense exists only at 100%, the others at ``budgets``."""
    return (1.0,) if name == "dense" else tuple(budgets)


def block_pattern(layers: Iterable[int] | None) -> re.Pattern:
    """Matches module / parameter names inside the selected transformer blocks.

    Blocks are named ``layer.i.`` (BERT), ``layers.i.`` or ``h.i.`` (GPT-2); ``None`` selects all.
    """
    index = r"\d+" if layers is None else "|".join(str(i) for i in layers)
    return re.compile(rf"(^|\.)(layer|layers|h)\.({index})\.")


@lru_cache(maxsize=1)
def environment() -> dict:
    """Code commit, library versions and GPU, recorded with every point so it can be reproduced
    (the commit and versions as the kernel sweep records them)."""
    versions = sweep_env.versions()
    return {
        "commit": sweep_env.git_commit(),
        "torch": versions["torch"],
        "python": versions["python"],
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def accuracy_record(
    *,
    experiment: str,
    format: str,
    hparams: dict | None,
    in_features: int,
    out_features: int,
    param_count: int | None,
    metric: str,
    value,
    seed: int,
    status: str = "ok",
    **extra,
) -> dict:
    """A flat accuracy record: ``ACCURACY_KEYS`` first, then ``status`` and the extras."""
    if isinstance(value, float) and not math.isfinite(value):
        value = None
    record = dict(
        zip(ACCURACY_KEYS, (format, hparams, in_features, out_features, param_count, experiment, metric, value, seed))
    )
    record["status"] = status
    record.update(extra)
    return record


def current_records(records: Iterable[dict], key_fields: tuple[str, ...]) -> list[dict]:
    """The records that stand: those of complete writes, and per point only its last write.

    A write torn by a kill (fewer lines than its ``write_size``) does not count, and a point
    that failed and was re-run is represented by its new records. Records without write
    fields (older stores) count as complete single writes.
    """
    records = list(records)
    sizes: dict = {}
    for r in records:
        sizes[r.get("write")] = sizes.get(r.get("write"), 0) + 1
    complete = [r for r in records if r.get("write") is None or sizes[r["write"]] == r.get("write_size")]
    last = {point_key(r, key_fields): r.get("write") for r in complete}
    return [r for r in complete if last[point_key(r, key_fields)] == r.get("write")]


def done_keys(records: Iterable[dict], key_fields: tuple[str, ...]) -> set[str]:
    """Keys of points that need no re-run: last complete write ``ok`` or ``skipped`` (not failed)."""
    return {
        point_key(r, key_fields)
        for r in current_records(records, key_fields)
        if not str(r.get("status", "ok")).startswith("failed")
    }


def run_points(
    store: str | Path,
    points: list[dict],
    run_point: Callable[[dict], list[dict]],
    *,
    key_fields: tuple[str, ...],
    desc: str,
    progress: bool = True,
) -> Path:
    """Run every point of ``points`` not yet done in ``store`` and append its records.

    A point is a dict holding at least ``key_fields``; ``run_point(point)`` returns its records
    (each carrying the point's key fields). A point's records are written together in one
    fsynced write tagged with a write id and its record count, so a kill leaves at most a torn
    write that does not count (:func:`current_records`). :class:`CannotRepresent` becomes one
    record ``skipped: <reason>``; any other exception one record ``failed: <reason>``, and the
    run goes on. Failed points are retried on the next run, skipped ones are not.
    """
    from tqdm.auto import tqdm

    records = RecordStore(store)
    done = done_keys(records, key_fields)
    todo = [p for p in points if point_key(p, key_fields) not in done]
    for point in tqdm(todo, desc=desc, disable=not progress, dynamic_ncols=True):
        try:
            results = run_point(point)
        except CannotRepresent as exc:
            results = [_problem_record(point, f"skipped: {exc}")]
        except Exception as exc:  # noqa: BLE001 — a failed point is recorded, the run goes on
            traceback.print_exc()
            results = [_problem_record(point, f"failed: {type(exc).__name__}: {exc}")]
        write = {"write": uuid.uuid4().hex[:16], "write_size": len(results)}
        records.append_many([{**result, **write} for result in results])
    return records.path


def _problem_record(point: dict, status: str) -> dict:
    base = {k: point.get(k) for k in ("format", "in_features", "out_features", "experiment", "metric", "seed")}
    extra = {k: v for k, v in point.items() if k not in base}
    return accuracy_record(**base, hparams=None, param_count=None, value=None, status=status, **extra)
