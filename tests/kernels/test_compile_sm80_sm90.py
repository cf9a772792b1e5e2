"""CI's GPU-less proof that every Triton kernel still compiles for A100 (sm80) and H100 (sm90).

``mbs compile-check`` compiles each kernel's first launch at its default config in bf16 for both
architectures (ptxas from the Triton wheel, no GPU) and the test reads the JSON it writes.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import mbs_layers
from mbs_layers import cli
from mbs_layers.compilecheck.launches import jit_kernels

ROOT = Path(mbs_layers.__file__).resolve().parent.parent


def run_cli(*args, cache, timeout=900):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]), MBS_COMPILE_CACHE=str(cache))
    return subprocess.run(
        [sys.executable, "-m", "mbs_layers", "compile-check", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def compiled(tmp_path_factory):
    """The default-config bf16 compile of every kernel, sm80 and sm90, once per test run."""
    out = tmp_path_factory.mktemp("compiled")
    done = run_cli(
        "--defaults-only",
        "--dtypes",
        "bf16",
        "--launches-per-kernel",
        "1",
        "--tokens",
        "256",
        "--out",
        str(out),
        cache=out / "cache",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "kernels-compiled.json").read_text())


@pytest.mark.compile
def test_every_kernel_compiles_for_sm80_and_sm90(compiled):
    assert set(compiled["registered"]) == set(jit_kernels())
    seen = {(r["kernel"], r["arch"]) for r in compiled["rows"]}
    assert seen == {(k, a) for k in jit_kernels() for a in ("sm80", "sm90")}
    for r in compiled["rows"]:
        assert r["ok"], r
        assert 0 < r["shared"] <= r["smem_limit"] or r["shared"] == 0, r


@pytest.mark.compile
def test_dot_kernels_use_tensor_cores(compiled):
    """bf16 tl.dot lowers to HMMA on sm80 and to HGMMA (wgmma) or HMMA on sm90."""
    dots = [r for r in compiled["rows"] if r["uses_dot"]]
    # kernels whose first captured launch always multiplies (the chain kernel's first one can be
    # constant fan-in's gather-only epilogue; its GEMM launches are in the committed table)
    assert {r["kernel"] for r in dots} >= {"_block_gemm_kernel", "_mode_product_kernel", "_nm_kernel"}
    for r in dots:
        assert (r["hmma"] if r["arch"] == "sm80" else r["hmma"] + r["hgmma"]) > 0, r


@pytest.mark.compile
def test_results_are_cached_between_runs(compiled, tmp_path):
    """A second run of one kernel compiles nothing: every result comes from the disk cache."""
    cache = tmp_path / "cache"
    args = ("--kernels", "_sddmm_kernel", "--dtypes", "bf16", "--arch", "sm80", "--tokens", "64")
    first, second = run_cli(*args, cache=cache), run_cli(*args, cache=cache)
    assert first.returncode == second.returncode == 0, first.stderr[-2000:]
    assert len(list(cache.glob("*.json"))) == first.stderr.count(": ok (")
    assert " (0.0 s)" in second.stderr and " (0.0 s)" not in first.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--arch", "sm70"), "--arch"),
        (("--kernels", "_nope"), "--kernels"),
        (("--dtypes", "int8"), "--dtypes"),
        (("--shard", "2/2"), "--shard"),
    ],
)
def test_bad_arguments_are_one_line_errors(args, message, capsys):
    assert cli.main(["compile-check", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"mbs: error: {message}") and "\n" not in err, err
