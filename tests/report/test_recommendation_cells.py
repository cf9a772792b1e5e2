"""Recommendation cells: "no format fits" is not a warning, speed-ups keep significant digits,
each cell names its candidate count, repeated runs count once (median), noisy picks say so."""

from synthetic_records import kernel_record

from mbs_layers.records import RecordStore
from mbs_layers.records.files import load_results
from mbs_layers.report import analysis as an
from mbs_layers.report import build_report
from mbs_layers.report.build import _recommendation_tables, speedup_text


def test_speedups_keep_significant_digits():
    assert speedup_text(0.0021) == "0.0021×" and speedup_text(1.234) == "1.23×" and speedup_text(755.4) == "755×"


def measured(records, tmp_path):
    store = RecordStore(tmp_path / "k.jsonl")
    for r in records:
        store.append(r)
    return an.one_row_per_point(an.ok_kernels(load_results(store.path)))


def test_repeated_runs_count_once_with_their_median(tmp_path):
    lucky = [kernel_record("lowrank", {"rank": 64}, speedup_vs_dense=s) for s in (10.0, 1.0, 1.0)]
    steady = kernel_record("lowrank", {"rank": 32}, speedup_vs_dense=2.0)
    rows = measured([*lucky, steady], tmp_path)
    assert len(rows) == 2 and rows.set_index("hparams_key")["runs"].to_dict() == {'{"rank": 64}': 3, '{"rank": 32}': 1}
    rec = an.recommend(rows, [*an.SHAPE, *an.SETTING, "tokens"], budgets=(0.5,))
    assert rec.iloc[0]["hparams"] == '{"rank": 32}' and rec.iloc[0]["candidates"] == 2


def test_no_fit_is_not_a_warning_and_cells_name_their_candidates(tmp_path):
    rows = measured([kernel_record("lowrank", {"rank": 64}, speedup_vs_dense=0.0021, noisy=True)], tmp_path)
    rec = an.recommend(rows, [*an.SHAPE, *an.SETTING, "tokens"], budgets=(0.5, 0.01))
    cells = _recommendation_tables(rec, [*an.SHAPE, *an.SETTING], "tokens", "tokens")[0]["rows"][0]["cells"]
    fits, none = cells
    assert none["format"] == "—" and not none["warn"] and none["empty"]
    assert "0.0021× dense" in fits["detail"] and "best of 1" in fits["detail"] and "noisy timing" in fits["detail"]


def test_report_page_has_the_cells_and_counts_noisy_speedups(tmp_path):
    store = RecordStore(tmp_path / "k.jsonl")
    store.append(kernel_record("dense", speedup_vs_dense=1.0))
    store.append(kernel_record("lowrank", {"rank": 64}, speedup_vs_dense=0.0021))
    store.append(kernel_record("lowrank", {"rank": 32}, speedup_vs_dense=0.5, noisy=True))
    html = build_report([store.path], tmp_path / "r.html").read_text()
    assert "0.5× dense (triton) · noisy timing" in html and "best of 2" in html
    assert "1 of 2 speed-ups shown come from noisy timings" in html
