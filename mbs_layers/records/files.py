"""Load result files into one tidy pandas DataFrame, and check records against the schema.

Two input kinds (keys: ``mbs_layers.records``):

* pytest-benchmark JSON (``pytest bench/ --benchmark-json out.json``): one record per
  benchmark in its ``extra_info``; the file's ``machine_info`` (GPU, versions, measured
  peaks) is kept per row as ``machine_info``.
* JSONL stores written by :class:`mbs_layers.records.RecordStore` (sweeps, accuracy runs).

Every row gets ``kind`` ("kernel" or "accuracy"), ``source_file``, and ``hparams_key``
(a canonical string of the ``hparams`` dict, hashable, for grouping and joining).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from . import ACCURACY_KEYS, KERNEL_KEYS, RecordStore, valid_status

if TYPE_CHECKING:  # pandas is imported where results are loaded: the core needs no pandas
    import pandas

PASSES = ("fwd", "fwd_bwd")
# Added by load_results, never part of a record.
DERIVED_COLUMNS = ("kind", "source_file", "hparams_key")

log = logging.getLogger(__name__)


def record_kind(record: dict) -> str:
    """``accuracy`` for records with an experiment and metric, ``kernel`` for timed points."""
    if "experiment" in record and "metric" in record:
        return "accuracy"
    if "tokens" in record and ("median_s" in record or "status" in record):
        return "kernel"
    raise ValueError(
        "record is neither a kernel record (needs tokens and median_s/status) nor an accuracy "
        f"record (needs experiment and metric); keys: {sorted(record)}"
    )


def schema_problems(record: dict) -> list[str]:
    """What is wrong with ``record`` under the record schema (empty list: valid).

    Kernel records must have exactly ``KERNEL_KEYS``; accuracy records at least
    ``ACCURACY_KEYS`` (extras such as ``source``, ``rel_error`` or ``status`` are allowed).
    """
    try:
        kind = record_kind(record)
    except ValueError as exc:
        return [str(exc)]
    keys = KERNEL_KEYS if kind == "kernel" else ACCURACY_KEYS
    problems = [f"missing key {k!r}" for k in keys if k not in record]
    status = record.get("status", None if kind == "kernel" else "ok")  # optional on accuracy records
    if not isinstance(status, str) or not valid_status(status):
        problems.append(f"status={status!r}: allowed 'ok', 'failed: <reason>', 'skipped: <reason>'")
    if kind == "kernel":
        problems += [f"unexpected key {k!r}" for k in sorted(set(record) - set(KERNEL_KEYS))]
        if "pass" in record and record["pass"] not in PASSES:
            problems.append(f"pass={record['pass']!r}: allowed {list(PASSES)}")
        if "dtype" in record and not isinstance(record["dtype"], str):
            problems.append(f"dtype={record['dtype']!r} must be a string like 'float32'")
    hparams = record.get("hparams", {})
    # an accuracy point that never ran (skipped/failed) may have no hyper-parameters
    if not isinstance(hparams, dict) and not (kind == "accuracy" and hparams is None and status != "ok"):
        problems.append(f"hparams={hparams!r} must be a dict")
    return problems


_NUMBER = (int, float)
# the fields report, compare and tune compute with, and the types they need (None: not measured)
FIELD_TYPES = {
    "status": (str,),
    "format": (str,),
    "backend": (str,),
    "device": (str,),
    "dtype": (str,),
    "pass": (str,),
    "metric": (str,),
    "experiment": (str,),
    "in_features": (int,),
    "out_features": (int,),
    "tokens": (int,),
    "param_count": (int,),
    "median_s": _NUMBER,
    "value": _NUMBER,
    "speedup_vs_dense": _NUMBER,
    "hparams": (dict,),
}


def check_types(record: dict) -> None:
    """``ValueError`` naming the first field whose value has a type the tools cannot use."""
    for key, types in FIELD_TYPES.items():
        value = record.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
            raise ValueError(f"field {key!r}={value!r} must be {' or '.join(t.__name__ for t in types)} or null")
    samples = record.get("samples_s")
    if samples is not None and (
        not isinstance(samples, list) or not all(isinstance(s, _NUMBER) and not isinstance(s, bool) for s in samples)
    ):
        raise ValueError(f"field 'samples_s' must be a list of numbers or null, got {samples!r}")


def check_records(records: Iterable[dict]) -> None:
    """Raise ``ValueError`` listing the first problems if any record breaks the schema."""
    problems = [f"record {i}: {p}" for i, r in enumerate(records) for p in schema_problems(r)]
    if problems:
        more = f" (+{len(problems) - 10} more)" if len(problems) > 10 else ""
        raise ValueError("records break the schema: " + "; ".join(problems[:10]) + more)


def hparams_key(hparams) -> str:
    """Canonical, hashable text of a hyper-parameter dict (``{}`` for formats without any)."""
    return json.dumps(hparams or {}, sort_keys=True)


UNTIMED_KEY = "mbs_untimed"  # the skipped/failed points of ``pytest bench/`` (sweep/pytest_support.py)


def read_benchmark_json(path: Path) -> list[dict]:
    """Records from a pytest-benchmark JSON file: each benchmark's ``extra_info``, then the
    skipped/failed points under ``mbs_untimed``.

    Where ``extra_info`` lacks latency fields, pytest-benchmark's own ``stats`` fill them
    (``median`` -> ``median_s``, raw ``data`` -> ``samples_s``). A file that is not JSON, or
    whose ``benchmarks`` is not a list of objects, is a ``ValueError`` naming the file.
    """
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not JSON ({err})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list):
        raise ValueError(f"{path}: not a pytest-benchmark JSON file (no 'benchmarks' list)")
    machine = doc.get("machine_info") or {}
    records = []
    untimed = doc.get(UNTIMED_KEY) or []
    if not isinstance(untimed, list):
        raise ValueError(f"{path}: {UNTIMED_KEY!r} must be a list")
    for i, bench in enumerate([*doc["benchmarks"], *untimed]):
        extra = bench.get("extra_info") if isinstance(bench, dict) else None
        if (
            not isinstance(bench, dict)
            or not isinstance(extra or {}, dict)
            or not isinstance(bench.get("stats") or {}, dict)
        ):
            raise ValueError(f"{path}: benchmark entry {i} must be an object with 'extra_info' and 'stats' objects")
        record = dict(extra or {})
        if not record:
            continue
        stats = bench.get("stats") or {}
        if record.get("median_s") is None and "median" in stats:
            record["median_s"] = stats["median"]
        if record.get("samples_s") is None and stats.get("data"):
            record["samples_s"] = list(stats["data"])
        record["machine_info"] = machine
        records.append(record)
    return records


def read_records(path: str | os.PathLike) -> list[dict]:
    """Records of one file: pytest-benchmark JSON (``.json``) or a JSONL store (anything else)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"results file {str(path)!r} does not exist")
    if path.suffix == ".json":
        return read_benchmark_json(path)
    return RecordStore(path).records()


def not_results_reason(path: Path) -> str | None:
    """Why ``path`` is not a result file (None: it looks like one), without loading it all.

    A ``.json`` file must be a pytest-benchmark document (a dict with a ``benchmarks`` list);
    a ``.jsonl`` store's first record must be a kernel or accuracy record.
    """
    try:
        if path.suffix == ".json":
            doc = json.loads(path.read_text())
            if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list):
                return "not a pytest-benchmark JSON file (no 'benchmarks' list)"
            return None
        with path.open() as fh:
            first = next((line for line in fh if line.strip()), None)
        if first is not None:
            record = json.loads(first)
            if not isinstance(record, dict):
                return "not a JSONL record store (first line is not an object)"
            record_kind(record)
    except (OSError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
        return str(exc)
    return None


POWER_TRACE_SUFFIX = ".power.jsonl"  # a sweep's GPU power samples beside its store (sweep/energy.py)


def expand_paths(paths) -> list[Path]:
    """``paths`` (one or many) as a list of files, each folder replaced by its result files.

    A folder's ``*.json``/``*.jsonl`` members that are not result files (e.g. a script's own
    JSON output next to the sweeps) are skipped with a logged warning; files named explicitly
    are kept, so loading them raises.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files = []
    for path in map(Path, paths):
        if not path.is_dir():
            files.append(path)
            continue
        members = (
            p for p in path.iterdir() if p.suffix in (".json", ".jsonl") and not p.name.endswith(POWER_TRACE_SUFFIX)
        )
        for member in sorted(members):
            reason = not_results_reason(member)
            if reason is None:
                files.append(member)
            else:
                log.warning("skipping %s: not a result file (%s)", member, reason)
    return files


def load_results(paths) -> pandas.DataFrame:
    """One tidy row per record from pytest-benchmark JSON files and JSONL stores.

    ``paths``: one path or an iterable of paths; a folder stands for its ``*.json`` and
    ``*.jsonl`` files. Columns: the record keys (union over all records; absent ones are NaN)
    plus ``kind``, ``source_file`` and ``hparams_key``.
    """
    import pandas as pd

    rows = []
    for path in expand_paths(paths):
        for i, record in enumerate(read_records(path)):
            try:
                kind = record_kind(record)
                check_types(record)
            except ValueError as err:
                raise ValueError(f"{path}: record {i}: {err}") from None
            rows.append(
                {
                    **record,
                    "kind": kind,
                    "source_file": str(path),
                    "hparams": record.get("hparams") or {},
                    "hparams_key": hparams_key(record.get("hparams")),
                }
            )
    if not rows:
        return pd.DataFrame(columns=list(dict.fromkeys(KERNEL_KEYS + ACCURACY_KEYS + DERIVED_COLUMNS)))
    return pd.DataFrame(rows)
