"""mbs history check: an injected step is found at its commit, flat noise is quiet, exit codes."""

import sys

import pytest
from history_helpers import A100, build_history, commit, run_records, write_store

from mbs_layers.cli import main as cli_main
from mbs_layers.history.check import check
from mbs_layers.history.detect import Detector

pytest.importorskip("otava.analysis")


def regressions(table):
    return table[table["verdict"] == "regression"]


@pytest.mark.parametrize("seed, step_at", [(0, 7), (1, 12), (2, 16)])
def test_injected_step_is_found_at_its_commit(tmp_path, seed, step_at):
    store = build_history(tmp_path, step_at=step_at, seed=seed)
    found = regressions(check(store.frame()))
    assert set(found["first_bad_commit"]) == {commit(step_at)}
    assert len(found) == 2 and set(found["found_by"]) == {"change point"}  # both points slowed
    assert found["step"].between(0.07, 0.13).all() and (found["confidence"] > 0.999).all()
    assert cli_main(["history", "check", "--db", str(store.path)]) == 1


@pytest.mark.parametrize("seed", range(4))
def test_flat_noise_is_quiet(tmp_path, seed, capsys):
    store = build_history(tmp_path, seed=seed)
    assert check(store.frame()).empty
    assert cli_main(["history", "check", "--db", str(store.path)]) == 0
    assert "0 regression" in capsys.readouterr().out


def test_a_step_below_the_threshold_does_not_fail(tmp_path):
    store = build_history(tmp_path, step_at=10, seed=3)
    table = check(store.frame(), threshold=0.2)
    assert set(table["verdict"]) == {"below threshold"} and len(table) == 2
    assert cli_main(["history", "check", "--db", str(store.path), "--threshold", "0.2"]) == 0


def test_a_step_at_the_newest_commit_is_found_by_the_pairwise_test(tmp_path, capsys):
    store = build_history(tmp_path, step_at=19, cv=0.0)
    found = regressions(check(store.frame()))
    assert set(found["found_by"]) == {"newest run"} and set(found["first_bad_commit"]) == {commit(19)}
    assert cli_main(["history", "check", "--db", str(store.path)]) == 1
    assert commit(19)[:12] in capsys.readouterr().out


def test_since_and_last_hide_old_steps(tmp_path, capsys):
    store = build_history(tmp_path, step_at=8, seed=1)
    assert regressions(check(store.frame(), since=commit(8)[:8])).shape[0] == 2
    assert check(store.frame(), since=commit(9)).empty
    assert check(store.frame(), last=5).empty
    assert cli_main(["history", "check", "--db", str(store.path), "--since", commit(10)]) == 0
    assert cli_main(["history", "check", "--db", str(store.path), "--since", "deadbeef"]) == 2
    assert capsys.readouterr().err.startswith("mbs: error: --since 'deadbeef' is not in the history")
    assert cli_main(["history", "check", "--db", str(store.path), "--last", "0"]) == 2


def test_another_gpu_is_never_a_baseline_unless_pooled(tmp_path):
    store = build_history(tmp_path, seed=5)
    # the newest commit ran only on an A100, whose kernels are 30% slower than the H100's
    slow = [
        dict(r, median_s=r["median_s"] * 1.3, samples_s=[s * 1.3 for s in r["samples_s"]])
        for r in run_records(20, device=A100, seed=5)
    ]
    store.add([write_store(tmp_path / "a100.jsonl", slow)], commit=commit(20), date="2026-11-21T00:00:00")
    assert check(store.frame()).empty
    pooled = regressions(check(store.frame(), any_gpu=True))
    assert set(pooled["first_bad_commit"]) == {commit(20)} and set(pooled["gpu"]) == {"any"}


def test_energy_is_its_own_series(tmp_path, capsys):
    store = build_history(tmp_path, seed=6, energy_step_at=11)
    found = regressions(check(store.frame()))
    assert set(found["metric"]) == {"energy_j_per_call"} and set(found["first_bad_commit"]) == {commit(11)}
    assert cli_main(["history", "check", "--db", str(store.path)]) == 1
    assert "energy_j_per_call" in capsys.readouterr().out


def test_detector_parameters_are_checked():
    with pytest.raises(ValueError, match="max_pvalue"):
        Detector(max_pvalue=0)
    with pytest.raises(ValueError, match="min_segment"):
        Detector(min_segment=0)


def test_without_otava_the_check_is_one_error_line(tmp_path, monkeypatch, capsys):
    store = build_history(tmp_path, n_commits=4)
    monkeypatch.setitem(sys.modules, "otava.analysis", None)  # import now raises ImportError
    assert cli_main(["history", "check", "--db", str(store.path)]) == 2
    assert capsys.readouterr().err.startswith("mbs: error: change-point detection needs Apache Otava")


@pytest.mark.parametrize("flag", [["--max-pvalue", "1.5"], ["--threshold", "-0.1"]])
def test_bad_check_options_are_one_error_line(tmp_path, capsys, flag):
    store = build_history(tmp_path, n_commits=4)
    assert cli_main(["history", "check", "--db", str(store.path), *flag]) == 2
    assert capsys.readouterr().err.startswith("mbs: error:")


def test_one_noisy_newest_run_within_the_run_to_run_spread_is_not_a_regression(tmp_path):
    """Tight repeats make the pairwise test certain, but earlier commits already moved by ±6%."""
    from mbs_layers.history.store import HistoryStore

    levels = [1.00, 1.06, 0.95, 1.05, 0.96, 1.04, 0.97, 1.06, 0.98, 1.03, 0.96, 1.02]
    store = HistoryStore(tmp_path / "h.db")
    for i, level in enumerate(levels):
        records = run_records(i, cv=0.0, step_at=0, step=level - 1)
        store.add([write_store(tmp_path / f"r{i}.jsonl", records)], commit=commit(i), date=f"2026-11-{i + 1:02d}")
    table = check(store.frame())
    assert table.empty  # the newest run is 6% above the one before, but not outside the spread
    steady = build_history(tmp_path / "steady", n_commits=12, cv=0.0, step_at=11, step=0.06)
    assert set(regressions(check(steady.frame()))["found_by"]) == {"newest run"}
