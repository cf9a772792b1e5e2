"""Generated runs for history tests: one results file per commit, with an optional step."""

from __future__ import annotations

import json
import random

from synthetic_records import H100, kernel_record

from mbs_layers.records import RecordStore

A100 = "NVIDIA A100-SXM4-80GB"
POINTS = [("dense", {}, 64, 1e-4), ("lowrank", {"rank": 16}, 256, 5e-5)]


def run_records(index, *, step_at=None, step=0.10, cv=0.01, device=H100, seed=0, energy_step_at=None, repeats=10):
    """The records of the run at commit ``index``: each point's level moves by ``cv`` run to run,
    its repeats by 0.2% around it, and is ``1 + step`` times higher from commit ``step_at`` on."""
    rnd = random.Random(f"{seed}-{index}-{device}")
    records = []
    for fmt, hp, tokens, base in POINTS:
        level = base * (1 + cv * rnd.gauss(0, 1)) * (1 + step if step_at is not None and index >= step_at else 1)
        samples = [level * (1 + 0.002 * rnd.gauss(0, 1)) for _ in range(repeats)]
        record = kernel_record(
            fmt,
            hp,
            n=256,
            tokens=tokens,
            median_s=sorted(samples)[repeats // 2],
            samples=samples,
            device=device,
            versions={"torch": "2.13.0", "driver": "570.1"},
        )
        # energy is its own series only where the test asks for one
        record["energy_j_per_call"] = (
            None
            if energy_step_at is None
            else 0.01 * (1 + 0.005 * rnd.gauss(0, 1)) * (1.2 if index >= energy_step_at else 1)
        )
        records.append(record)
    return records


def commit(index: int) -> str:
    return f"{index:04d}" + "ab" * 18


def write_store(path, records):
    store = RecordStore(path)
    for record in records:
        store.append(record)
    return path


def write_benchmark_json(path, records, *, when="2026-12-01T10:00:00"):
    """A pytest-benchmark JSON document holding ``records`` as extra_info."""
    doc = {
        "machine_info": {"versions": {"driver": "570.1"}},
        "datetime": when,
        "benchmarks": [{"name": f"b{i}", "extra_info": r, "stats": {}} for i, r in enumerate(records)],
    }
    path.write_text(json.dumps(doc))
    return path


def build_history(tmp_path, n_commits=20, **run_kwargs):
    """A history database of ``n_commits`` runs, one per commit, dated a day apart."""
    from mbs_layers.history.store import HistoryStore

    store = HistoryStore(tmp_path / "history.db")
    for i in range(n_commits):
        results = write_store(tmp_path / f"run{i}.jsonl", run_records(i, **run_kwargs))
        store.add([results], commit=commit(i), branch="main", date=f"2026-11-{1 + i:02d}T00:00:00")
    return store
