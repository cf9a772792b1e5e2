"""Roofline-predicted times: in every sweep record (``predicted_s``) and as the report's own,
labelled table of A100/H100 predictions, never mixed with measured times."""

import pandas as pd
import pytest
from synthetic_records import kernel_record

from mbs_layers.predicted import predicted_seconds
from mbs_layers.report.build import build_report
from mbs_layers.report.predicted import predicted_table
from mbs_layers.sweep.kernel_record import add_prediction


def test_prediction_is_the_slower_of_compute_and_memory_at_datasheet_peaks():
    flops, min_bytes = 2 * 4096**3, 3 * 2 * 4096**2
    assert predicted_seconds("NVIDIA H100 80GB HBM3", "bfloat16", flops, min_bytes) == pytest.approx(flops / 989e12)
    assert predicted_seconds("NVIDIA H100 80GB HBM3", "bfloat16", 10, min_bytes) == pytest.approx(min_bytes / 3.35e12)
    assert predicted_seconds("NVIDIA A100-SXM4-80GB", "float32", flops, min_bytes) == pytest.approx(flops / 19.5e12)


@pytest.mark.parametrize("device", ["cpu: x86_64", None, "Some other GPU"])
def test_no_prediction_without_a_datasheet(device):
    assert predicted_seconds(device, "bfloat16", 1e9, 1e6) is None


def test_sweep_records_carry_the_prediction_for_their_gpu():
    record = {"device": "NVIDIA A100-SXM4-80GB", "dtype": "float16", "flops": 312e9, "min_bytes": 1}
    assert add_prediction(record)["predicted_s"] == pytest.approx(1e-3)
    assert add_prediction({**record, "device": "cpu: arm64"})["predicted_s"] is None


def test_predicted_table_has_one_row_per_point_and_a_column_per_gpu():
    records = [kernel_record("lowrank", {"rank": 64}, device="cpu: x86_64", backend=b) for b in ("torch", "triton")]
    records.append(kernel_record("dense", device="cpu: x86_64"))
    frame = pd.DataFrame(records).assign(hparams_key=lambda d: d["hparams"].map(str))
    table = predicted_table(frame)
    assert len(table) == 2  # backends share a point: the counts, hence the prediction, are the same
    for gpu in ("NVIDIA A100-SXM4-80GB", "NVIDIA H100"):
        expected = [
            1e3 * predicted_seconds(gpu, r["dtype"], r["flops"], r["min_bytes"]) for r in table.to_dict("records")
        ]
        assert table[f"{gpu} predicted ms"].tolist() == pytest.approx(expected)
    assert not any("median" in c for c in table.columns)


def test_report_of_a_cpu_run_shows_labelled_predictions(tmp_path):
    import json

    store = tmp_path / "cpu.jsonl"
    store.write_text(json.dumps(kernel_record("lowrank", {"rank": 64}, device="cpu: x86_64")) + "\n")
    html = build_report([store], tmp_path / "report.html").read_text()
    section = html[html.index('id="predicted"') : html.index('id="tables"')]
    assert "not measured" in section and "PREDICTED" in section
    assert "NVIDIA H100 predicted ms" in section and "NVIDIA A100-SXM4-80GB predicted ms" in section
