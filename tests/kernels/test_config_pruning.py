"""Per-architecture autotune pruning from the compiler's results (``unfit_configs.json``)."""

import json

import pytest
import torch
import triton

from mbs_layers.kernels import _tuning

BIG = triton.Config({"BT": 128, "BN": 128}, num_warps=8, num_stages=3)
SMALL = triton.Config({"BT": 32, "BN": 64}, num_warps=4, num_stages=2)


@pytest.fixture
def table(monkeypatch, tmp_path):
    """A fake compiled-results table: BIG unfit for _k on sm80 at bf16, everything at fp16."""
    path = tmp_path / "unfit.json"
    path.write_text(
        json.dumps(
            {
                "_k": {
                    "sm80": {
                        "bf16": [_tuning.config_label(BIG)],
                        "fp16": [_tuning.config_label(BIG), _tuning.config_label(SMALL)],
                    }
                }
            }
        )
    )
    monkeypatch.setattr(_tuning, "UNFIT_PATH", path)
    _tuning.unfit_table.cache_clear()
    yield
    _tuning.unfit_table.cache_clear()


def test_config_label_names_meta_parameters_warps_and_stages():
    assert _tuning.config_label(BIG) == "BN=128,BT=128,w8,s3"


@pytest.mark.parametrize(
    ("dtype", "precision", "label"),
    [
        (torch.bfloat16, "tf32", "bf16"),
        (torch.float16, "tf32", "fp16"),
        (torch.float32, "ieee", "fp32-ieee"),
        (torch.float32, "tf32", "fp32-tf32"),
        (torch.float32, None, "fp32"),
    ],
)
def test_launch_dtype_labels(dtype, precision, label):
    named = {"n": 3, "X": torch.empty(2, dtype=dtype), "Y": torch.empty(2, dtype=torch.int32)}
    if precision:
        named["PRECISION"] = precision
    assert _tuning.launch_dtype(named) == label


def on_arch(monkeypatch, arch: int) -> None:
    """Prune as on a GPU of this architecture family (80, 90)."""
    monkeypatch.setattr(_tuning, "_arch_of", lambda tensors: arch)


def test_prune_drops_configs_unfit_on_the_target_arch_and_dtype(table, monkeypatch):
    prune = _tuning.prune_unfit("_k")
    bf16 = {"X": torch.empty(2, dtype=torch.bfloat16)}
    on_arch(monkeypatch, 80)
    assert prune([BIG, SMALL], bf16) == [SMALL]
    # other kernels and dtypes are untouched
    assert _tuning.prune_unfit("_other")([BIG, SMALL], bf16) == [BIG, SMALL]
    assert prune([BIG, SMALL], {"X": torch.empty(2), "PRECISION": "ieee"}) == [BIG, SMALL]
    on_arch(monkeypatch, 90)  # nothing listed for sm90
    assert prune([BIG, SMALL], bf16) == [BIG, SMALL]


def test_prune_never_leaves_nothing(table, monkeypatch):
    on_arch(monkeypatch, 80)
    assert _tuning.prune_unfit("_k")([BIG, SMALL], {"X": torch.empty(2, dtype=torch.float16)}) == [SMALL]


@pytest.mark.parametrize(("capability", "arch"), [((8, 0), 80), ((8, 6), 80), ((9, 0), 90), ((10, 0), 90)])
def test_arch_family(capability, arch):
    assert _tuning.arch_family(*capability) == arch
