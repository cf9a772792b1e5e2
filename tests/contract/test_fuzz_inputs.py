"""Hypothesis drives build, approximate and the CLI with random (mostly bad) input: the only
errors allowed are named ones (ValueError from the library; on the CLI an exit status with
at most one ``mbs: error:`` line, never a traceback)."""

import json
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mbs_layers as mbs
from mbs_layers.cli import main as cli_main

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
NAMES = st.sampled_from(sorted(mbs.FORMATS)) | st.text(max_size=8)
HP_KEYS = sorted({k for cls in mbs.FORMATS.values() for k in cls.hparam_names}) + ["bogus"]
ODD = (
    st.integers(-3, 40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.none()
    | st.booleans()
    | st.text(max_size=4)
    | st.lists(st.integers(0, 4), max_size=2)
)
HPARAMS = st.just({}) | st.dictionaries(st.sampled_from(HP_KEYS), ODD, max_size=2)
SIZES = st.integers(-2, 40) | st.floats(allow_nan=True) | st.text(max_size=3) | st.none() | st.booleans()


@settings(FUZZ, max_examples=300)
@given(name=NAMES, n_in=SIZES, n_out=SIZES, bias=st.booleans() | ODD, hp=HPARAMS)
def test_build_raises_only_value_errors(name, n_in, n_out, bias, hp):
    try:
        layer = mbs.build(name, n_in, n_out, bias=bias, **hp)
    except ValueError:
        return
    assert isinstance(bias, bool) and (layer.bias is not None) == bias  # bias="yes" used to pass
    y = layer(torch.randn(2, layer.in_features))
    assert y.shape == (2, layer.out_features)


WEIGHTS = st.builds(
    lambda rows, cols, dtype, poison: _weight(rows, cols, dtype, poison),
    st.integers(1, 12) | st.just(0),
    st.integers(1, 12) | st.just(0),
    st.sampled_from([torch.float32, torch.float64, torch.float16, torch.int32, torch.bool, torch.complex64]),
    st.sampled_from([math.nan, math.inf, -math.inf, None]),
)


def _weight(rows, cols, dtype, poison):
    w = torch.randn(rows, cols, dtype=torch.float64)
    if poison is not None and w.numel():
        w[0, 0] = poison
    return w.to(dtype) if not dtype.is_complex else torch.complex(w, w).to(dtype)


@settings(FUZZ, max_examples=300)
@given(
    name=st.sampled_from(sorted(mbs.FORMATS)) | NAMES,
    weight=WEIGHTS | st.none() | st.integers() | st.lists(st.floats(), max_size=3),
    bias=st.none() | ODD | WEIGHTS.map(lambda w: w.flatten()),
    hp=HPARAMS,
)
def test_approximate_raises_only_value_errors_and_returns_finite_layers(name, weight, bias, hp):
    try:
        layer = mbs.approximate(name, weight, bias=bias, **hp)
    except ValueError:
        return
    assert all(bool(p.isfinite().all()) for p in layer.parameters())


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
DOCS = (
    JSON
    | st.fixed_dictionaries({"benchmarks": JSON})
    | st.fixed_dictionaries(
        {"benchmarks": st.lists(st.fixed_dictionaries({"extra_info": JSON, "stats": JSON}), max_size=2)}
    )
)


def run_cli(argv, capsys) -> int:
    try:
        code = cli_main(argv)
    except SystemExit as exit_:  # argparse's own usage errors
        code = exit_.code
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert code in (0, 1, 2), (code, err)
    return code


@FUZZ
@given(
    doc=DOCS,
    suffix=st.sampled_from([".json", ".jsonl"]),
    lines=st.integers(1, 3),
    threshold=st.sampled_from(["0.05", "nan", "-1", "inf", "x", "1e309"]),
    alpha=st.sampled_from(["0.01", "7", "0", "nan", "-0.5"]),
)
def test_cli_compare_and_report_on_random_files(tmp_path_factory, capsys, doc, suffix, lines, threshold, alpha):
    path = tmp_path_factory.mktemp("fuzz") / f"r{suffix}"
    text = json.dumps(doc)
    path.write_text(text if suffix == ".json" else "\n".join([text] * lines) + "\n")
    run_cli(["compare", str(path), str(path), "--threshold", threshold, "--alpha", alpha], capsys)
    run_cli(["tune", str(path), "--out", str(path.with_suffix(".tuning.json"))], capsys)


@settings(FUZZ, max_examples=15)
@given(doc=DOCS, suffix=st.sampled_from([".json", ".jsonl"]))
def test_cli_report_on_random_files(tmp_path_factory, capsys, doc, suffix):
    path = tmp_path_factory.mktemp("fuzz") / f"r{suffix}"
    path.write_text(json.dumps(doc) + "\n")
    run_cli(["report", str(path), "--out", str(path.with_suffix(".html"))], capsys)


@FUZZ
@given(
    device=st.sampled_from(["nosuchdev", "cuda", "cuda:9", "", "cpu:x", "meta", "mps"]) | st.text(max_size=6),
    preset=st.sampled_from(["nosuch", "shapes: 64", "formats: [lowrnak]", "[", "tokens: []", "7", "backends: []"]),
)
def test_cli_sweep_bad_device_or_preset(tmp_path_factory, capsys, device, preset):
    folder = tmp_path_factory.mktemp("fuzz")
    preset_file = folder / "p.yaml"
    preset_file.write_text(preset)
    code = run_cli(
        ["sweep", "--out", str(folder / "s.jsonl"), "--device", device, "--preset", str(preset_file)], capsys
    )
    assert code == 2


@pytest.mark.parametrize("argv", [["sweep", "--out", "/proc/nope/s.jsonl"], ["run", "--out", "/dev/null"]])
def test_cli_unwritable_out(argv, capsys):
    assert run_cli(argv, capsys) == 2
