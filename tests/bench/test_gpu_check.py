"""bench/gpu_check.py rehearsed on the CPU (tiny shapes, Triton interpreter): it must not fail
on its first GPU run for a trivial reason."""

import importlib.util
import json
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_run_writes_results_and_ends_with_the_summary(tmp_path, capsys):
    gpu_check = load_script()
    assert gpu_check.main(["--tiny", "--out", str(tmp_path), "--formats", "lowrank"]) == 0
    out = capsys.readouterr().out
    assert "skipping `pytest -m gpu tests/`" in out and "skipping the sparse24 subset" in out
    (folder,) = (tmp_path / "bench" / "results").iterdir()  # named after the device
    assert folder.name == gpu_check.gpu_slug(torch.device("cpu"))
    assert json.loads((folder / "environment.json").read_text())["versions"]["torch"] == torch.__version__
    for store in ("check.jsonl", "kernels-short.jsonl"):
        records = [json.loads(line) for line in (folder / store).read_text().splitlines()]
        assert {(r["format"], r["backend"]) for r in records} >= {
            ("lowrank", "torch"),
            ("lowrank", "triton"),
            ("dense", "torch"),
        }
    table = out[out.index("preset ") :].strip().splitlines()  # the table is printed last
    assert table[0].split()[:4] == ["preset", "format", "backend", "dtype"]
    rows = [line.split() for line in table[2:]]
    assert len(rows) == sum(len((folder / s).read_text().splitlines()) for s in ("check.jsonl", "kernels-short.jsonl"))
    assert {(r[1], r[2]) for r in rows} >= {("lowrank", "triton"), ("lowrank", "torch")}
    assert (folder / "summary.txt").read_text().endswith(table[-1] + "\n")


def test_without_cuda_a_full_run_is_refused(tmp_path, capsys):
    assert load_script().main(["--out", str(tmp_path)]) == 2
    assert "no CUDA device" in capsys.readouterr().err
