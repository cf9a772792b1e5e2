"""The results loader: both input kinds round-trip into one tidy frame; the schema check bites."""

import json

import pandas as pd
import pytest
from synthetic_records import accuracy_record, kernel_record, synthetic_projection, synthetic_sweep

from mbs_layers.records import KERNEL_KEYS, RecordStore
from mbs_layers.records.files import check_records, load_results, schema_problems


def write_store(path, records):
    store = RecordStore(path)
    for r in records:
        store.append(r)
    return path


def benchmark_json(path, records, machine_info=None):
    doc = {
        "machine_info": machine_info or {"gpu": "test"},
        "benchmarks": [
            {"name": f"test_point[{i}]", "stats": {"median": r["median_s"], "data": r["samples_s"]}, "extra_info": r}
            for i, r in enumerate(records)
        ],
    }
    path.write_text(json.dumps(doc))
    return path


def assert_round_trip(df, records, kind):
    assert len(df) == len(records)
    assert set(df["kind"]) == {kind}
    for row, record in zip(df.to_dict("records"), records):
        for key, value in record.items():
            if value is None:  # a null in a numeric column reads back as NaN
                assert row[key] is None or pd.isna(row[key]), key
            else:
                assert row[key] == value, key


def test_jsonl_store_round_trips_kernel_and_accuracy_records(tmp_path):
    kernels = synthetic_sweep(widths=(256,), tokens=(16, 64))
    accuracy = synthetic_projection(n=256)
    df = load_results([write_store(tmp_path / "k.jsonl", kernels), write_store(tmp_path / "a.jsonl", accuracy)])
    assert_round_trip(df[df["kind"] == "kernel"], kernels, "kernel")
    assert_round_trip(df[df["kind"] == "accuracy"], accuracy, "accuracy")
    assert all(isinstance(h, dict) for h in df["hparams"])
    assert df.loc[df["format"] == "lowrank", "hparams_key"].str.contains('"rank"').all()


def test_benchmark_json_round_trips_extra_info_and_keeps_machine_info(tmp_path):
    kernels = synthetic_sweep(widths=(256,), tokens=(16,))
    df = load_results(benchmark_json(tmp_path / "b.json", kernels, {"gpu": "H100"}))
    assert_round_trip(df, kernels, "kernel")
    assert all(m == {"gpu": "H100"} for m in df["machine_info"])


def test_benchmark_json_stats_fill_missing_latency(tmp_path):
    record = kernel_record("lowrank", {"rank": 8}, n=64, median_s=2e-3, samples=[1e-3, 2e-3, 3e-3])
    path = benchmark_json(tmp_path / "b.json", [record])
    doc = json.loads(path.read_text())
    doc["benchmarks"][0]["extra_info"].update(median_s=None, samples_s=None)
    path.write_text(json.dumps(doc))
    row = load_results(path).iloc[0]
    assert row["median_s"] == 2e-3 and row["samples_s"] == [1e-3, 2e-3, 3e-3]


def test_empty_inputs_give_an_empty_frame_with_the_schema_columns(tmp_path):
    (tmp_path / "empty.jsonl").touch()
    df = load_results([tmp_path / "empty.jsonl"])
    assert df.empty and set(KERNEL_KEYS) <= set(df.columns) and "kind" in df.columns


def test_missing_file_and_unknown_record_raise(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_results(tmp_path / "nope.jsonl")
    with pytest.raises(ValueError, match="neither a kernel record"):
        load_results(write_store(tmp_path / "odd.jsonl", [{"format": "dense"}]))
    (tmp_path / "x.json").write_text("[]")
    with pytest.raises(ValueError, match="not a pytest-benchmark JSON"):
        load_results(tmp_path / "x.json")


def test_schema_problems_name_what_is_wrong():
    good = kernel_record("dense")
    assert schema_problems(good) == [] and schema_problems(accuracy_record()) == []
    check_records([good, accuracy_record()])
    missing = {k: v for k, v in good.items() if k != "flops"}
    assert schema_problems(missing) == ["missing key 'flops'"]
    assert schema_problems({**good, "extra": 1}) == ["unexpected key 'extra'"]
    assert "status='done'" in schema_problems({**good, "status": "done"})[0]
    assert "failed: <reason>" in schema_problems({**good, "status": "failed: "})[0]
    assert "pass='bwd'" in schema_problems({**good, "pass": "bwd"})[0]
    assert "dtype" in schema_problems({**good, "dtype": 16})[0]
    assert "hparams" in schema_problems({**accuracy_record(), "hparams": [1]})[0]
    with pytest.raises(ValueError, match="record 1: missing key 'flops'"):
        check_records([good, missing])


def test_accuracy_status_is_optional_but_checked():
    assert "status='done'" in schema_problems({**accuracy_record(), "status": "done"})[0]
    skipped = {**accuracy_record(), "status": "skipped: no setting fits", "hparams": None, "value": None}
    assert schema_problems(skipped) == []
    assert "hparams=None" in schema_problems({**accuracy_record(), "hparams": None})[0]


def test_a_folder_stands_for_its_result_files(tmp_path):
    write_store(tmp_path / "k.jsonl", synthetic_sweep(widths=(64,), tokens=(8,)))
    benchmark_json(tmp_path / "b.json", synthetic_sweep(widths=(64,), tokens=(16,)))
    (tmp_path / "notes.txt").write_text("not results")
    df = load_results(tmp_path)
    assert sorted(set(df["source_file"])) == [str(tmp_path / "b.json"), str(tmp_path / "k.jsonl")]
    assert sorted(set(df["tokens"])) == [8, 16]


def test_a_folder_skips_json_that_is_not_results_but_a_named_file_raises(tmp_path, caplog):
    write_store(tmp_path / "k.jsonl", synthetic_sweep(widths=(64,), tokens=(8,)))
    (tmp_path / "bsr_vs_torch.json").write_text(json.dumps({"device": "x", "rows": []}))
    (tmp_path / "other.jsonl").write_text(json.dumps({"name": "not a record"}) + "\n")
    with caplog.at_level("WARNING", logger="mbs_layers.records.files"):
        df = load_results(tmp_path)
    assert set(df["source_file"]) == {str(tmp_path / "k.jsonl")}
    assert "bsr_vs_torch.json" in caplog.text and "other.jsonl" in caplog.text
    with pytest.raises(ValueError, match="not a pytest-benchmark JSON"):
        load_results(tmp_path / "bsr_vs_torch.json")
