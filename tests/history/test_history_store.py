"""mbs history add: both result kinds go in, duplicates are no-ops, GPUs stay apart."""

import sqlite3

import pytest
from history_helpers import (
    A100,
    build_history,
    commit,
    run_records,
    write_benchmark_json,
    write_store,
)

from mbs_layers.cli import main as cli_main
from mbs_layers.history.store import HistoryStore


def test_runs_are_keyed_and_a_duplicate_is_a_no_op(tmp_path):
    store = build_history(tmp_path, n_commits=3)
    frame = store.frame()
    assert len(frame) == 3 * 2 and set(frame["commit_sha"]) == {commit(i) for i in range(3)}
    assert set(frame["driver"]) == {"570.1"} and (frame["samples"].map(len) == 10).all()
    again = store.add([tmp_path / "run2.jsonl"], commit=commit(2), date="2026-11-03T00:00:00")
    assert again == (0, 2) and len(store.frame()) == 6


def test_adding_an_unchanged_file_twice_without_a_date_is_a_no_op(tmp_path, capsys):
    results = write_store(tmp_path / "run.jsonl", run_records(0))
    db = str(tmp_path / "h.db")
    assert cli_main(["history", "add", str(results), "--commit", "abc", "--db", db]) == 0
    assert cli_main(["history", "add", str(results), "--commit", "abc", "--db", db]) == 0
    assert "0 point(s) added for commit abc, 2 already there" in capsys.readouterr().out
    assert len(HistoryStore(db).frame()) == 2


def test_pytest_benchmark_json_is_dated_by_its_own_datetime(tmp_path):
    path = write_benchmark_json(tmp_path / "bench.json", run_records(0, device=A100), when="2026-12-01T10:00:00")
    store = HistoryStore(tmp_path / "h.db")
    assert store.add([path], commit="c1", branch="feature") == (2, 0)
    frame = store.frame()
    assert set(frame["date"]) == {"2026-12-01T10:00:00+00:00"} and set(frame["gpu"]) == {A100}
    assert set(frame["branch"]) == {"feature"} and set(frame["driver"]) == {"570.1"}


def test_another_gpu_is_its_own_row_not_a_duplicate(tmp_path):
    store = build_history(tmp_path, n_commits=1)
    other = write_store(tmp_path / "a100.jsonl", run_records(0, device=A100))
    assert store.add([other], commit=commit(0), date="2026-11-01T00:00:00") == (2, 0)
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("SELECT COUNT(DISTINCT gpu) FROM measurements").fetchone() == (2,)


def test_failed_points_are_not_history(tmp_path):
    records = run_records(0)
    records[0].update(status="failed: out of memory", median_s=None, samples_s=None)
    store = HistoryStore(tmp_path / "h.db")
    assert store.add([write_store(tmp_path / "r.jsonl", records)], commit="c1") == (1, 0)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--commit", " "], "--commit must name the commit"),
        (["--commit", "c1", "--date", "yesterday"], "--date 'yesterday' is not an ISO 8601 date"),
    ],
)
def test_bad_add_input_is_one_error_line(tmp_path, capsys, argv, message):
    results = write_store(tmp_path / "run.jsonl", run_records(0))
    assert cli_main(["history", "add", str(results), "--db", str(tmp_path / "h.db"), *argv]) == 2
    assert capsys.readouterr().err.startswith(f"mbs: error: {message}")


def test_missing_results_and_missing_database_are_errors(tmp_path, capsys):
    assert (
        cli_main(["history", "add", str(tmp_path / "nope.jsonl"), "--commit", "c", "--db", str(tmp_path / "h.db")]) == 2
    )
    assert "does not exist" in capsys.readouterr().err
    assert cli_main(["history", "check", "--db", str(tmp_path / "none.db")]) == 2
    assert capsys.readouterr().err.startswith("mbs: error: history database")
