"""Result records (keys below; meanings in docs/benchmarking.md and docs/accuracy.md) and the
append-only JSONL store.

Kernel and accuracy records are flat dicts sharing the identifying keys
``format, hparams, in_features, out_features, param_count``. A store appends each record
as one JSON line, flushed and fsynced as soon as it exists, so a killed run loses at most
the point in flight; re-running with the same store skips points already recorded.

The one home of "records": this package fixes the schema and the store;
``records.files`` reads result files (stores, pytest-benchmark JSON, folders) back into one
table; the sweep fills kernel records in ``sweep/kernel_record.py``.

Reading reports what it cannot use: a line that is not JSON (a line torn by a kill) is
skipped with one warning naming the file and line numbers, a line that is JSON but not an
object is a ``ValueError`` naming the file and line. A writer that must be the only one
(a sweep) holds :meth:`RecordStore.exclusive`, an ``fcntl`` lock on the file; a second
writer gets :class:`StoreLockedError` at once instead of writing every point a second time.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)
APPEND_WAIT_S = 10.0  # how long append() waits for another writer's lock

KERNEL_KEYS = (
    "format", "hparams", "in_features", "out_features", "tokens", "dtype", "backend", "pass",
    "param_count", "storage_bytes", "flops", "min_bytes",
    "median_s", "q10_s", "q90_s", "samples_s", "peak_memory_bytes",
    "tflops", "gbps", "roofline_fraction", "speedup_vs_dense", "speedup_vs_unstructured",
    "predicted_s", "device", "nvml", "status", "versions", "commit", "hostname",
    "cpu_threads", "noisy",  # torch threads pinned for a CPU timing (None on GPUs); spread too large to trust
)  # fmt: skip
# energy fields (sweep/energy.py): null with ``energy_reason`` where no counter was read
ENERGY_KEYS = (
    "energy_j_per_call", "energy_j_per_token", "energy_avg_power_w", "energy_window_s",
    "energy_repeats", "energy_calls_per_window", "energy_spread", "energy_resolution",
    "energy_source", "energy_reason", "idle_power_w",
)  # fmt: skip
KERNEL_KEYS += ENERGY_KEYS
ACCURACY_KEYS = (
    "format",
    "hparams",
    "in_features",
    "out_features",
    "param_count",
    "experiment",
    "metric",
    "value",
    "seed",
)
STATUS_PREFIXES = ("ok", "failed: ", "skipped: ")


def valid_status(status: str) -> bool:
    """``ok``, or ``failed: <reason>`` / ``skipped: <reason>`` with a non-empty reason."""
    return status == "ok" or any(status.startswith(p) and len(status) > len(p) for p in STATUS_PREFIXES[1:])


def point_key(record: dict, fields: Iterable[str]) -> str:
    """A canonical string identifying a record by ``fields`` (for resume / de-duplication)."""
    return json.dumps({f: record.get(f) for f in fields}, sort_keys=True, default=str)


class StoreLockedError(ValueError):
    """Another process is writing the store (it holds the store's lock)."""


class RecordStore:
    """Append-only JSONL file of records; safe against a process killed mid-run."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if self.path.is_dir():
            raise ValueError(f"record store {str(self.path)!r} is a directory, not a file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._held = None  # the open file whose lock this object holds (see exclusive())

    def __iter__(self) -> Iterator[dict]:
        if not self.path.exists():
            return
        torn = []
        with self.path.open() as fh:
            for number, line in enumerate(fh, start=1):
                line = line.strip()
                if not line:
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line torn by a kill: the point is re-run
                    torn.append(number)
                    continue
                if not isinstance(record, dict):
                    raise ValueError(
                        f"{self.path}:{number}: a record must be a JSON object, got {type(record).__name__}"
                    )
                yield record
        if torn:
            log.warning(
                "%s: skipped %d unreadable line(s) (not JSON, e.g. torn by a killed run): line %s",
                self.path,
                len(torn),
                ", ".join(map(str, torn[:10])) + (" ..." if len(torn) > 10 else ""),
            )

    @contextlib.contextmanager
    def exclusive(self):
        """Hold the store's write lock for the block; :class:`StoreLockedError` if another holds it."""
        fh = self.path.open("a")
        try:
            self._lock(fh, wait_s=0.0)
        except StoreLockedError:
            fh.close()
            raise
        self._held = fh
        try:
            yield self
        finally:
            self._held = None
            fh.close()  # closing releases the lock

    def records(self) -> list[dict]:
        return list(self)

    def keys(self, fields: Iterable[str]) -> set[str]:
        """Keys of the points already recorded (any status), for resuming."""
        fields = tuple(fields)
        return {point_key(r, fields) for r in self}

    def append(self, record: dict) -> None:
        """Append one record; waits for a writer holding the lock unless it is this object."""
        self.append_many([record])

    def append_many(self, records: list[dict]) -> None:
        """All ``records`` in one write, flushed and fsynced (a kill can tear only this block)."""
        text = "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in records)
        with self.path.open("a") as fh:
            if self._held is None:  # other one-record writers (xdist workers) hold it for milliseconds
                self._lock(fh, wait_s=APPEND_WAIT_S)  # released when fh closes
            # a previous kill may have left a torn last line without newline
            if fh.tell() > 0 and not self._ends_with_newline():
                text = "\n" + text
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())

    def _lock(self, fh, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreLockedError(
                        f"record store {str(self.path)!r} is being written by another process (it holds "
                        "the store's lock); wait for it to finish or write to another store"
                    ) from None
                time.sleep(0.05)

    def _ends_with_newline(self) -> bool:
        with self.path.open("rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) == b"\n"
