"""Glue between the sweep and pytest-benchmark (used by ``bench/conftest.py``).

pytest-benchmark times with a host clock. To make its ``stats`` carry *device* seconds, a
point is first measured by the sweep's own timer (CUDA events, L2 flush, CUDA graphs) and its
raw samples are then replayed through :data:`REPLAY_CLOCK`, a clock that advances by one
sample per round (``benchmark.pedantic`` with one iteration per round). Points that were not
timed (skipped/failed) have no stats, and pytest-benchmark's loader rejects a file whose
``benchmarks`` holds an entry without them; their records go to the document's own
:data:`UNTIMED_KEY` list instead, so no record is lost and pytest-benchmark's ``compare``,
``--benchmark-compare`` and ``--benchmark-compare-fail`` read the file. Under pytest-xdist
each worker ships its JSON document to the controller, which merges them into the one
``--benchmark-json`` file.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..records.files import UNTIMED_KEY

WORKER_KEY = "mbs_benchmark_json"  # where a worker puts its JSON document in ``workeroutput``


class ReplayClock:
    """A pytest-benchmark timer whose rounds last exactly the loaded samples."""

    def __init__(self):
        self.now, self._samples, self._ticks = 0.0, [], 0

    def load(self, samples) -> None:
        self._samples, self._ticks = list(samples), 0

    def __call__(self) -> float:
        self._ticks += 1
        if self._ticks % 2 == 0:  # each round reads the clock twice: start, end
            self.now += self._samples.pop(0)
        return self.now


REPLAY_CLOCK = ReplayClock()


def replay(benchmark, samples, extra_info: dict | None = None) -> None:
    """Hand device samples (seconds) to pytest-benchmark as its rounds, with ``extra_info``.

    The test must carry ``@pytest.mark.benchmark(timer=REPLAY_CLOCK)``.
    """
    benchmark.extra_info.update(extra_info or {})
    REPLAY_CLOCK.load(samples)
    benchmark.pedantic(lambda: None, rounds=len(samples), iterations=1, warmup_rounds=0)


def untimed_entry(nodeid: str, name: str, record: dict) -> dict:
    """An :data:`UNTIMED_KEY` entry for a skipped/failed point: its test and full record."""
    return {"name": name, "fullname": nodeid, "extra_info": record}


def merge_documents(docs: list[dict]) -> dict:
    """One pytest-benchmark JSON document from the xdist workers' documents."""
    merged = dict(docs[0])
    merged["benchmarks"] = [b for doc in docs for b in doc["benchmarks"]]
    merged[UNTIMED_KEY] = [b for doc in docs for b in doc.get(UNTIMED_KEY, [])]
    merged["machine_info"] = dict(docs[0]["machine_info"], workers=[d["machine_info"] for d in docs])
    return merged


def dumps(doc: dict) -> str:
    return json.dumps(doc, indent=2, default=str)


class XdistMerge:
    """Controller side of ``pytest -n``: collect the workers' documents, write one JSON file."""

    def __init__(self, config):
        self.config, self.docs = config, []

    def pytest_testnodedown(self, node, error):
        text = getattr(node, "workeroutput", {}).get(WORKER_KEY)
        if text:
            self.docs.append(json.loads(text))

    def pytest_sessionfinish(self, session):
        path = self.config.getoption("benchmark_json", None)
        if self.docs and path and not hasattr(self.config, "workerinput"):
            Path(path).write_text(dumps(merge_documents(self.docs)))
