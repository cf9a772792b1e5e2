"""The history database: one SQLite row per measured point of a run.

SQLite ships with Python (``sqlite3``), needs no server, keeps the whole history in one file
that a CI cache or artifact can carry between jobs, and enforces the uniqueness that makes
adding the same run twice a no-op. A row is keyed by (GPU name, driver, dtype, point, backend,
commit, date): ``point`` is the canonical JSON of format, hyper-parameters, shape, tokens and
pass; ``date`` is when the run was measured (see :func:`run_date`).
"""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from ..records.files import expand_paths, read_records, record_kind

POINT_FIELDS = ("format", "hparams", "in_features", "out_features", "tokens", "pass")
KEY = ("gpu", "driver", "dtype", "point", "backend", "commit_sha", "date")
# what a row keeps besides its key; energy_j_per_call is NULL for runs that did not measure it
VALUES = ("branch", "median_s", "samples_json", "energy_j_per_call")
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS measurements (
    gpu TEXT NOT NULL, driver TEXT NOT NULL, dtype TEXT NOT NULL, point TEXT NOT NULL,
    backend TEXT NOT NULL, commit_sha TEXT NOT NULL, date TEXT NOT NULL,
    branch TEXT, median_s REAL NOT NULL, samples_json TEXT, energy_j_per_call REAL,
    PRIMARY KEY ({", ".join(KEY)})
)"""
DEFAULT_PATH = Path("bench/history.db")


def point_of(record: dict) -> str:
    """Canonical JSON of what identifies a point within a GPU, dtype and backend."""
    return json.dumps({f: record.get(f) or ({} if f == "hparams" else None) for f in POINT_FIELDS}, sort_keys=True)


def run_date(path: Path) -> str:
    """When a results file was measured (UTC ISO 8601): pytest-benchmark's own ``datetime``,
    else the file's modification time, so adding an unchanged file again gives the same key."""
    if path.suffix == ".json":
        stamp = json.loads(path.read_text()).get("datetime")
        if stamp:
            parsed = datetime.fromisoformat(stamp)
            parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
            return parsed.astimezone(timezone.utc).isoformat(timespec="seconds")
    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")


def normalise_date(text: str) -> str:
    """``text`` (any ISO 8601 date or date-time) as UTC ISO 8601; ValueError naming ``--date``."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--date {text!r} is not an ISO 8601 date such as 2026-12-02T05:30:00Z") from None
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc).isoformat(timespec="seconds")


def driver_of(record: dict) -> str:
    """The NVIDIA driver a record was measured under ('' when unknown: no NVML, CPU runs)."""
    for versions in ((record.get("versions") or {}), (record.get("machine_info") or {}).get("versions") or {}):
        if versions.get("driver"):
            return str(versions["driver"])
    return ""


def rows_of(records, *, commit: str, branch: str | None, date: str) -> list[tuple]:
    """The database rows of one run's records: ok kernel records with a median time."""
    rows = []
    for record in records:
        if record_kind(record) != "kernel" or record.get("status") != "ok" or record.get("median_s") is None:
            continue
        samples = record.get("samples_s")
        rows.append(
            (
                str(record.get("device") or ""),
                driver_of(record),
                str(record.get("dtype") or ""),
                point_of(record),
                str(record.get("backend") or ""),
                commit,
                date,
                branch,
                float(record["median_s"]),
                json.dumps(samples) if samples else None,
                record.get("energy_j_per_call"),
            )
        )
    return rows


class HistoryStore:
    """Runs across commits in one SQLite file (created by :meth:`add` when it does not exist)."""

    def __init__(self, path: str | os.PathLike = DEFAULT_PATH):
        self.path = Path(path)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path)
        conn.execute(SCHEMA)
        return conn

    def add(self, paths, *, commit: str, branch: str | None = None, date: str | None = None) -> tuple[int, int]:
        """Add the results files (or folders) ``paths`` as runs of ``commit``; (rows added, rows
        already there). Each file is one run, dated by ``date`` or by :func:`run_date`."""
        if not commit or not commit.strip():
            raise ValueError("--commit must name the commit the results were measured at")
        files = expand_paths(paths)
        rows = [
            row
            for path in files
            for row in rows_of(
                read_records(path),
                commit=commit.strip(),
                branch=branch,
                date=normalise_date(date) if date else run_date(path),
            )
        ]
        if not rows:
            raise ValueError(f"no ok kernel record in {', '.join(map(str, files)) or 'the given paths'}")
        with self._connect() as conn:
            before = conn.total_changes
            conn.executemany(
                f"INSERT OR IGNORE INTO measurements ({', '.join(KEY + VALUES)}) "
                f"VALUES ({', '.join('?' * len(KEY + VALUES))})",
                rows,
            )
            added = conn.total_changes - before
        conn.close()
        return added, len(rows) - added

    def frame(self) -> pd.DataFrame:
        """Every row, with ``samples`` decoded (a list of seconds, or ``[median_s]``)."""
        if not self.path.exists():
            raise ValueError(
                f"history database {str(self.path)!r} does not exist; "
                "fill it with `mbs history add RESULTS --commit SHA`"
            )
        with self._connect() as conn:
            df = pd.read_sql_query("SELECT * FROM measurements ORDER BY date, commit_sha", conn)
        conn.close()
        df["samples"] = [json.loads(s) if s else [m] for s, m in zip(df["samples_json"], df["median_s"])]
        return df.drop(columns="samples_json")
