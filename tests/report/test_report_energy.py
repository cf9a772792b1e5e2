"""The report's energy section: measured records give the J/token table, accuracy per joule and
the power trace; records without energy say "not measured on this machine" and why."""

import json

import pandas as pd
from synthetic_records import kernel_record, synthetic_projection, synthetic_sweep

from mbs_layers.records import RecordStore
from mbs_layers.report import build_report
from mbs_layers.report.energy import energy_table
from mbs_layers.sweep.energy import power_trace_path


def store(path, records):
    s = RecordStore(path)
    for r in records:
        s.append(r)
    return path


def energy_part(text: str) -> str:
    start = text.index('<h2 id="energy">')
    return text[start : text.index("<h2", start + 1)]


def test_gpu_records_give_table_accuracy_per_joule_and_power_trace(tmp_path):
    kernels = store(tmp_path / "kernels.jsonl", synthetic_sweep(widths=(256,), tokens=(16, 512)))
    trace = power_trace_path(kernels)
    trace.write_text(
        "".join(json.dumps({"t": 100 + i / 10, "power_w": 300 + i, "device": "H100"}) + "\n" for i in range(20))
        + '{"t": 10'
    )  # a torn last line of a killed sweep
    accuracy = store(tmp_path / "accuracy.jsonl", synthetic_projection(n=256))
    part = energy_part(build_report([kernels, accuracy], tmp_path / "r.html").read_text())
    assert "energy_j_per_token" in part and "energy_vs_dense" in part
    assert "Accuracy per joule" in part and "Power trace" in part
    assert part.count("data:image/png;base64,") >= 2
    assert "not measured" not in part


def test_energy_vs_dense_is_dense_joules_over_the_formats():
    records = [
        kernel_record("dense", n=256, median_s=2e-4),
        kernel_record("lowrank", {"rank": 64}, n=256, median_s=1e-4),  # 50% of dense
        kernel_record("lowrank", {"rank": 32}, n=256, median_s=8e-5),  # 25%
        kernel_record("lowrank", {"rank": 16}, n=256, median_s=5e-5),
    ]  # 12.5%: also the 25% tier
    df = pd.DataFrame(records)
    table = energy_table(df.assign(hparams_key=[json.dumps(r["hparams"], sort_keys=True) for r in records]))
    low = table[table["format"] == "lowrank"].set_index("tier")
    # constant power: J/call scales with time, so each tier's best is its fastest setting
    assert low["energy_vs_dense"].to_dict() == {0.25: 4.0, 0.5: 2.0}
    dense = table[table["format"] == "dense"]
    assert dense["energy_vs_dense"].tolist() == [1.0]


def test_cpu_records_say_not_measured_and_why(tmp_path):
    cpu = [kernel_record("dense", n=64, device="cpu"), kernel_record("lowrank", {"rank": 8}, n=64, device="cpu")]
    for r in cpu:
        r.update(energy_reason="cpu_not_requested")
    part = energy_part(build_report([store(tmp_path / "cpu.jsonl", cpu)], tmp_path / "r.html").read_text())
    assert "Energy was not measured on this machine" in part
    assert "2 records <code>cpu_not_requested</code>" in part
    assert "data:image/png" not in part
