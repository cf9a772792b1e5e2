"""Result records (DESIGN.md, "Result records") and the append-only JSONL store.

Kernel and accuracy records are flat dicts sharing the identifying keys
``format, hparams, in_features, out_features, param_count``. A store appends each record
as one JSON line, flushed and fsynced as soon as it exists, so a killed run loses at most
the point in flight; re-running with the same store skips points already recorded.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Iterator

KERNEL_KEYS = (
    "format", "hparams", "in_features", "out_features", "tokens", "dtype", "backend", "pass",
    "param_count", "storage_bytes", "flops", "min_bytes",
    "median_s", "q10_s", "q90_s", "samples_s", "peak_memory_bytes",
    "tflops", "gbps", "roofline_fraction", "speedup_vs_dense", "speedup_vs_unstructured",
    "predicted_s", "device", "nvml", "status", "versions", "commit",
)
ACCURACY_KEYS = (
    "format", "hparams", "in_features", "out_features", "param_count",
    "experiment", "metric", "value", "seed",
)
STATUS_PREFIXES = ("ok", "failed: ", "skipped: ")


def valid_status(status: str) -> bool:
    """``ok``, or ``failed: <reason>`` / ``skipped: <reason>`` with a non-empty reason."""
    return status == "ok" or any(
        status.startswith(p) and len(status) > len(p) for p in STATUS_PREFIXES[1:]
    )


def point_key(record: dict, fields: Iterable[str]) -> str:
    """A canonical string identifying a record by ``fields`` (for resume / de-duplication)."""
    return json.dumps({f: record.get(f) for f in fields}, sort_keys=True, default=str)


class RecordStore:
    """Append-only JSONL file of records; safe against a process killed mid-run."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def __iter__(self) -> Iterator[dict]:
        if not self.path.exists():
            return
        with self.path.open() as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:  # a line torn by a kill: the point is re-run
                    continue

    def records(self) -> list[dict]:
        return list(self)

    def keys(self, fields: Iterable[str]) -> set[str]:
        """Keys of the points already recorded (any status), for resuming."""
        fields = tuple(fields)
        return {point_key(r, fields) for r in self}

    def append(self, record: dict) -> None:
        line = json.dumps(record, sort_keys=True, default=str)
        with self.path.open("a") as fh:
            # a previous kill may have left a torn last line without newline
            if fh.tell() > 0 and not self._ends_with_newline():
                fh.write("\n")
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def _ends_with_newline(self) -> bool:
        with self.path.open("rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) == b"\n"
