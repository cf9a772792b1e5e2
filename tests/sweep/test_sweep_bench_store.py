"""``pytest bench/ --store``: re-runs append only points the store lacks for this device."""

import importlib.util
from types import SimpleNamespace

import torch
from sweep_helpers import ROOT, write_preset

from mbs_layers.records import RecordStore
from mbs_layers.sweep import environment


def load_bench_conftest():
    spec = importlib.util.spec_from_file_location("mbs_bench_conftest", ROOT / "bench" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_store_gets_each_point_once_per_device(tmp_path):
    conftest = load_bench_conftest()
    options = {"preset": str(write_preset(tmp_path / "p.yaml")), "device": "cpu", "store": str(tmp_path / "s.jsonl")}
    config = SimpleNamespace(getoption=options.get)
    here = environment.device_name(torch.device("cpu"))
    point = {
        "format": "dense",
        "hparams": {},
        "in_features": 32,
        "out_features": 32,
        "tokens": 4,
        "dtype": "float32",
        "backend": "torch",
        "status": "ok",
    }
    old, elsewhere, new = (
        {**point, "pass": "fwd", "device": here},
        {**point, "pass": "fwd_bwd", "device": "Other GPU"},
        {**point, "pass": "fwd_bwd", "device": here},
    )
    store = RecordStore(options["store"])
    store.append(old)
    store.append(elsewhere)

    state = conftest.SweepState(config)
    for record in (old, new, new):
        state.keep("node", "name", record)
    assert store.records() == [old, elsewhere, new]
