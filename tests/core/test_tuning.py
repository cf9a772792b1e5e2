"""backend="auto" follows the tuning table built from sweep records (CPU, Triton interpreted)."""

import json

import pytest
import torch

import mbs_layers as mbs
from mbs_layers import tuning
from mbs_layers.cli import main
from mbs_layers.commands.tune import build_table


def record(fmt, hparams, backend, seconds, tokens=16, device=None, pass_="fwd"):
    return {
        "format": fmt,
        "hparams": hparams,
        "in_features": 32,
        "out_features": 32,
        "tokens": tokens,
        "dtype": "float32",
        "backend": backend,
        "pass": pass_,
        "median_s": seconds,
        "status": "ok",
        "device": device or tuning.device_name(torch.device("cpu")),
    }


@pytest.fixture
def table_file(tmp_path, monkeypatch):
    path = tmp_path / "tuning.json"
    monkeypatch.setenv("MBS_TUNING_TABLE", str(path))
    tuning.load_table.cache_clear()
    yield path
    tuning.load_table.cache_clear()


def test_table_picks_fastest_backend_and_merged_dense():
    lr = {"rank": 4}
    table = build_table(
        [
            record("lowrank", lr, "torch", 3.0),
            record("lowrank", lr, "triton", 2.0),
            record("lowrank", lr, "triton", 9.0, pass_="fwd_bwd"),  # backward timings do not count
            record("dense", {}, "torch", 2.5),
            record("monarch", {"nblocks": 4}, "triton", 4.0, tokens=40),  # bucket 64, slower than dense
            record("dense", {}, "torch", 1.0, tokens=64),
        ]
    )
    cpu = tuning.device_name(torch.device("cpu"))
    assert table[tuning.table_key(cpu, "lowrank", lr, 32, 32, "float32", 16)] == "triton"
    assert table[tuning.table_key(cpu, "monarch", {"nblocks": 4}, 32, 32, "float32", 50)] == tuning.MERGED
    assert len(table) == 2


def test_auto_follows_the_table(table_file):
    layer = mbs.build("lowrank", 32, 32, rank=4, dtype=torch.float32)
    x = torch.randn(16, 32)
    expected = x @ layer.dense_weight().T + layer.bias
    layer(x)
    assert layer.last_backend == "torch"  # no table: the reference on CPU
    tuning.save_table(build_table([record("lowrank", {"rank": 4}, "triton", 1.0)]), table_file)
    torch.testing.assert_close(layer(x), expected, rtol=1e-4, atol=1e-4)
    assert layer.last_backend == "triton"
    assert layer(torch.randn(100, 32)).shape == (100, 32) and layer.last_backend == "torch"  # other bucket


def test_merged_dense_weight_only_without_autograd(table_file):
    layer = mbs.build("monarch", 32, 32, nblocks=4, dtype=torch.float64)
    tuning.save_table(
        build_table([record("monarch", {"nblocks": 4}, "torch", 2.0), record("dense", {}, "torch", 1.0)]), table_file
    )
    tuning.save_table({k.replace("float32", "float64"): v for k, v in tuning.load_table().items()}, table_file)
    x = torch.randn(16, 32, dtype=torch.float64)
    y = layer(x)
    assert layer.last_backend == "torch" and y.requires_grad  # training keeps the factored path
    with torch.no_grad():
        torch.testing.assert_close(layer(x), y.detach())
    assert layer.last_backend == "merged" and "merged" in repr(layer)
    with torch.no_grad():  # the cached weight follows an in-place update of the factors
        layer.w1.mul_(2)
        torch.testing.assert_close(layer(x), x @ layer.dense_weight().T + layer.bias)


def test_tune_command_writes_the_table(tmp_path, table_file, capsys):
    store = tmp_path / "kernels.jsonl"
    store.write_text(
        "\n".join(
            json.dumps(r)
            for r in [record("lowrank", {"rank": 4}, "torch", 3.0), record("lowrank", {"rank": 4}, "triton", 2.0)]
        )
    )
    assert main(["tune", str(store)]) == 0
    assert list(json.loads(table_file.read_text()).values()) == ["triton"]
    assert "1 points" in capsys.readouterr().out


def test_table_keys_match_layers_whose_defaults_the_sweep_omitted(table_file):
    """A sweep records btt's budget dict without its default factors; the layer has them filled in."""
    layer = mbs.build("btt", 32, 32, rank=2)
    assert set(layer.hparams) > {"rank"}
    tuning.save_table(build_table([record("btt", {"rank": 2}, "triton", 1.0)]), table_file)
    layer(torch.randn(16, 32))
    assert layer.last_backend == "triton"
