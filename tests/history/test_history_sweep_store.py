"""A real (tiny, CPU) sweep store goes into the history, and a slowdown injected into copies of
it is found by `mbs history check` at the commit where it starts."""

import random

import pytest
from sweep_helpers import FIXED_PEAKS, write_preset

from mbs_layers.cli import main as cli_main
from mbs_layers.history.store import HistoryStore
from mbs_layers.records import RecordStore
from mbs_layers.sweep import run_sweep

pytest.importorskip("otava.analysis")


def test_real_sweep_store_history_finds_an_injected_slowdown(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("mbs_layers.sweep.session.measure_peaks", lambda *a, **k: FIXED_PEAKS)
    preset = write_preset(tmp_path / "p.yaml", passes=["fwd"], timer={"warmup": 0, "repeats": 5})
    records = RecordStore(run_sweep(preset, tmp_path / "sweep.jsonl", progress=False)).records()
    ok = [r for r in records if r["status"] == "ok"]
    assert ok
    db = str(tmp_path / "h.db")
    rnd = random.Random(0)
    for i in range(14):
        # each commit: the measured run with every point moved by 0.5% run-to-run noise, 25% slower from commit 9
        scale = 1.25 if i >= 9 else 1.0
        store = RecordStore(tmp_path / f"c{i}.jsonl")
        for r in records:
            if r["status"] == "ok":
                noise = scale * (1 + 0.005 * rnd.gauss(0, 1))
                r = dict(r, median_s=r["median_s"] * noise, samples_s=[s * noise for s in r["samples_s"]])
            store.append(r)
        assert (
            cli_main(
                [
                    "history",
                    "add",
                    str(store.path),
                    "--commit",
                    f"c{i:02d}",
                    "--db",
                    db,
                    "--date",
                    f"2026-12-01T00:{i:02d}:00",
                ]
            )
            == 0
        )
    assert f"{len(ok)} point(s) added for commit c13, 0 already there" in capsys.readouterr().out
    assert len(HistoryStore(db).frame()) == 14 * len(ok)
    assert cli_main(["history", "check", "--db", db]) == 1
    out = capsys.readouterr().out
    assert out.count("c09") == len(ok) and f"{len(ok)} regression" in out
    assert cli_main(["history", "check", "--db", db, "--since", "c10"]) == 0
