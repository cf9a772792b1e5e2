"""Bad input at every public entry point is a named error: library ValueErrors, one
``mbs: error:`` line with exit 2 on the CLI, result files naming file and line."""

import json
import logging

import pytest
import torch
from synthetic_records import kernel_record

import mbs_layers as mbs
from mbs_layers import tuning
from mbs_layers.cli import main as cli_main
from mbs_layers.records import RecordStore, StoreLockedError
from mbs_layers.records.files import load_results
from mbs_layers.sweep.session import failure_reason


@pytest.mark.parametrize(
    "weight, words",
    [
        (torch.full((8, 8), float("nan")), "non-finite"),
        (torch.eye(8) * float("inf"), "non-finite"),
        (torch.ones(8, 8, dtype=torch.int64), "floating dtype"),
        (torch.ones(8, 8, dtype=torch.bool), "floating dtype"),
    ],
)
def test_approximate_rejects_bad_weights(weight, words):
    for name in ("lowrank", "lowrank_light", "dense", "monarch"):
        with pytest.raises(ValueError, match=f"weight .*{words}|weight must have a {words}"):
            mbs.approximate(name, weight)


def test_bias_must_be_a_bool():
    with pytest.raises(ValueError, match="bias must be True or False"):
        mbs.build("dense", 4, 4, bias="yes")


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mbs: error: "), err
    return err[0]


@pytest.mark.parametrize("device", ["nosuchdev", "cuda", "cuda:7"])
def test_bad_device_is_one_error_line(tmp_path, capsys, device):
    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert cli_main(["sweep", "--out", str(tmp_path / "s.jsonl"), "--device", device]) == 2
    assert "--device" in one_error_line(capsys)


def test_out_that_is_a_directory_or_under_a_file_fails_before_measuring(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("mbs_layers.sweep.run_sweep", lambda *a, **k: pytest.fail("measured"))
    assert cli_main(["sweep", "--out", str(tmp_path)]) == 2
    assert "is a directory" in one_error_line(capsys)
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    assert cli_main(["sweep", "--out", str(blocker / "s.jsonl")]) == 2
    assert "cannot be created" in one_error_line(capsys)
    assert cli_main(["run", "--out", str(blocker)]) == 2
    assert "is a file" in one_error_line(capsys)


@pytest.mark.parametrize("doc", [{"benchmarks": 5}, {"benchmarks": [5]}, {"benchmarks": [{"extra_info": 3}]}, [1]])
def test_malformed_benchmark_json_is_named(tmp_path, doc):
    """Each used to crash report/compare/tune with a TypeError or AttributeError."""
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="r.json"):
        load_results(path)


def test_json_parse_errors_name_the_file(tmp_path):
    path = tmp_path / "cut.json"
    path.write_text('{"benchmarks": [')
    with pytest.raises(ValueError, match="cut.json: not JSON"):
        load_results(path)


def test_store_lines_are_reported_by_file_and_line(tmp_path, caplog):
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps(kernel_record()) + "\n{torn\n" + json.dumps(kernel_record(tokens=8)) + "\n")
    with caplog.at_level(logging.WARNING):
        assert len(RecordStore(path).records()) == 2
    assert "s.jsonl" in caplog.text and "1 unreadable line" in caplog.text and "line 2" in caplog.text
    path.write_text(json.dumps(kernel_record()) + "\n[1, 2]\n")
    with pytest.raises(ValueError, match=r"s.jsonl:2: a record must be a JSON object"):
        load_results(path)


def test_a_second_writer_gets_a_clear_error(tmp_path):
    store = RecordStore(tmp_path / "s.jsonl")
    with store.exclusive():
        store.append(kernel_record())  # the holder itself may write
        with pytest.raises(StoreLockedError, match="another process"), RecordStore(store.path).exclusive():
            pass
    with RecordStore(store.path).exclusive():  # released
        pass


def test_tune_writes_beside_the_results_atomically(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MBS_TUNING_TABLE", str(tmp_path / "global.json"))
    results = tmp_path / "run" / "kernels.jsonl"
    store = RecordStore(results)
    store.append(kernel_record("lowrank", {"rank": 16}, n=64, tokens=16, dtype="float32", device="cpu: x"))
    assert cli_main(["tune", str(results)]) == 0
    assert (tmp_path / "run" / "tuning.json").is_file() and not (tmp_path / "global.json").exists()
    assert not list((tmp_path / "run").glob(".*tmp"))
    assert cli_main(["tune", str(results), "--install"]) == 0 and (tmp_path / "global.json").is_file()


@pytest.mark.parametrize("text", ["", '{"a": ', "[1]", '{"k": 3}'])
def test_damaged_tuning_table_is_warned_and_ignored(tmp_path, monkeypatch, caplog, text):
    path = tmp_path / "tuning.json"
    path.write_text(text)
    monkeypatch.setenv("MBS_TUNING_TABLE", str(path))
    tuning.load_table.cache_clear()
    try:
        layer = mbs.build("lowrank", 16, 16, rank=4)
        with caplog.at_level(logging.WARNING):
            y = layer(torch.randn(3, 16))
        assert y.shape == (3, 16) and "damaged" in caplog.text
    finally:
        tuning.load_table.cache_clear()


@pytest.mark.parametrize(
    "err",
    [
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: "
            "can't allocate memory: you tried to allocate 10 bytes."
        ),
        MemoryError(),
    ],
)
def test_cpu_out_of_memory_is_classified(err):
    assert failure_reason(err) == "failed: out of memory"


def test_resume_says_how_many_points_were_done(tmp_path, capsys):
    from sweep_helpers import write_preset

    preset = write_preset(tmp_path / "p.yaml", formats=["dense"], passes=["fwd"])
    args = ["sweep", "--preset", str(preset), "--out", str(tmp_path / "s.jsonl"), "--no-progress"]
    assert cli_main(args) == 0 and cli_main(args) == 0
    assert "1 points, 1 already done" in capsys.readouterr().err
