"""Shared machinery of the accuracy experiments: budgets, records, the resumable point loop."""
from __future__ import annotations

import math
import re
import traceback
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path

import torch

from ..records import ACCURACY_KEYS, RecordStore, point_key
from ..sweep import environment as sweep_env

# The kernel sweep's budget -> hyper-parameters rule: accuracy and kernel records join on the
# hparams it gives, so both sides must use this one function. Raises ValueError (the format's
# reason) when no setting fits; callers record the point as skipped.
from ..sweep.presets import budget_hparams  # noqa: F401  (re-exported for the experiments)

# Fractions of a layer's dense parameter count, ~1% .. 100% (the thesis's range).
BUDGETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
# A coarser sweep for ``mbs project`` (under a minute at n = 1024 on 2 cores). It stops at
# 50%: at 100% every format but 2:4 has grown to dense size, and BLAST's iterative projection
# alone would take ~2 min there (rank ~490); ``mbs accuracy`` presets cover 75% and 100%.
QUICK_BUDGETS = (0.01, 0.03, 0.1, 0.25, 0.5)


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
    return {"commit": sweep_env.git_commit(), "torch": versions["torch"], "python": versions["python"],
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def accuracy_record(*, experiment: str, format: str, hparams: dict | None, in_features: int,
                    out_features: int, param_count: int | None, metric: str, value, seed: int,
                    status: str = "ok", **extra) -> dict:
    """A flat accuracy record: ``ACCURACY_KEYS`` first, then ``status`` and the extras."""
    if isinstance(value, float) and not math.isfinite(value):
        value = None
    record = dict(zip(ACCURACY_KEYS, (format, hparams, in_features, out_features, param_count,
                                      experiment, metric, value, seed)))
    record["status"] = status
    record.update(extra)
    return record


def run_points(store: str | Path, points: list[dict], run_point: Callable[[dict], list[dict]], *,
               key_fields: tuple[str, ...], desc: str, progress: bool = True) -> Path:
    """Run every point of ``points`` not yet in ``store`` and append its records.

    A point is a dict holding at least ``key_fields``; ``run_point(point)`` returns its records
    (each carrying the point's key fields). A point's records are appended together once it is
    done, so a killed run loses only the point in flight; an exception becomes one record with
    status ``failed: <reason>`` (``skipped: <reason>`` for a ``ValueError``, a format that
    cannot represent the point) and the run goes on.
    """
    from tqdm.auto import tqdm

    records = RecordStore(store)
    done = records.keys(key_fields)
    todo = [p for p in points if point_key(p, key_fields) not in done]
    for point in tqdm(todo, desc=desc, disable=not progress, dynamic_ncols=True):
        try:
            results = run_point(point)
        except ValueError as exc:
            results = [_problem_record(point, f"skipped: {exc}")]
        except Exception as exc:  # noqa: BLE001 — a failed point is recorded, the run goes on
            traceback.print_exc()
            results = [_problem_record(point, f"failed: {type(exc).__name__}: {exc}")]
        for result in results:
            records.append(result)
    return records.path


def _problem_record(point: dict, status: str) -> dict:
    base = {k: point.get(k) for k in ("format", "in_features", "out_features", "experiment", "metric", "seed")}
    extra = {k: v for k, v in point.items() if k not in base}
    return accuracy_record(**base, hparams=None, param_count=None, value=None, status=status, **extra)
