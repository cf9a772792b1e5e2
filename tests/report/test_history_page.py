"""The report's history section: trend plots per kernel and GPU, the steps found, the CLI flag."""

import re

import pytest
from history_helpers import A100, build_history, commit, run_records, write_store

from mbs_layers.cli import main as cli_main
from mbs_layers.report.history import history_section

pytest.importorskip("otava.analysis")


def test_history_page_renders_trends_and_the_step(tmp_path):
    store = build_history(tmp_path, step_at=9, seed=1)
    store.add(
        [write_store(tmp_path / "a100.jsonl", run_records(19, device=A100))],
        commit=commit(19),
        date="2026-11-20T00:00:00",
    )
    out = tmp_path / "report.html"
    assert cli_main(["report", str(tmp_path / "run19.jsonl"), "--out", str(out), "--history", str(store.path)]) == 0
    html = out.read_text()
    section = html[html.index('<h2 id="history">') :]
    # one figure per (GPU, dtype, backend, format): dense and lowrank on the H100, the same on the A100
    captions = re.findall(r"<figcaption>([^<]*)</figcaption>", section)
    assert len(captions) == 4 and sum("A100" in c for c in captions) == 2
    assert len(re.findall(r'src="data:image/png;base64,', section)) == 4
    assert section.count(commit(9)[:12]) == 2 and "regression" in section and 'href="#history"' in html


def test_figures_beyond_the_limit_are_counted(tmp_path):
    store = build_history(tmp_path, n_commits=4)
    section = history_section(store.path, max_figures=1)
    assert len(section["figures"]) == 1 and section["note"] == "1 more trend plots not drawn."
    assert section["findings"] == "" and section["commits"] == 4


def test_report_without_history_has_no_history_section(tmp_path):
    out = tmp_path / "r.html"
    assert cli_main(["report", str(write_store(tmp_path / "r.jsonl", run_records(0))), "--out", str(out)]) == 0
    assert 'id="history"' not in out.read_text()
