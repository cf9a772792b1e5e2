"""The committed compile table (docs/kernels-compiled.json) covers every Triton kernel, leaves
every kernel a fitting config on sm80 and sm90, and is what the autotune pruning reads."""

import json
from pathlib import Path

import pytest

import mbs_layers
from mbs_layers.compilecheck import table
from mbs_layers.compilecheck.launches import jit_kernels
from mbs_layers.kernels import _tuning

DOC = Path(mbs_layers.__file__).resolve().parent.parent / "docs" / "kernels-compiled.json"


@pytest.fixture(scope="module")
def compiled():
    return json.loads(DOC.read_text())


def test_table_covers_every_registered_kernel_on_both_archs(compiled):
    kernels = set(jit_kernels())
    assert set(compiled["registered"]) == kernels, "run `mbs compile-check` and commit docs/kernels-compiled.*"
    assert {(r["kernel"], r["arch"]) for r in compiled["rows"]} == {(k, a) for k in kernels for a in ("sm80", "sm90")}


def test_every_kernel_keeps_a_fitting_config_per_arch_and_dtype(compiled):
    for s in compiled["summary"]:
        assert s["kept"] >= 1, s
        assert s["kept_spills"] == 0 and s["kept_smem"] <= s["smem_limit"], s


def test_pruning_reads_the_committed_table(compiled):
    assert _tuning.unfit_table() == table.unfit(compiled["rows"])


def test_unfit_lists_failed_spilling_and_oversized_configs():
    def row(config, **kw):
        base = {
            "kernel": "_k",
            "arch": "sm80",
            "dtype": "bf16",
            "config": config,
            "ok": True,
            "spills": 0,
            "shared": 100,
            "smem_limit": 200,
        }
        base.update(kw)
        return {**base, "fits": base["ok"] and base["spills"] == 0 and base["shared"] <= base["smem_limit"]}

    rows = [row("a"), row("b", ok=False), row("c", spills=8), row("d", shared=300), row("a", arch="sm90", shared=300)]
    assert table.unfit(rows) == {"_k": {"sm80": {"bf16": ["b", "c", "d"]}, "sm90": {"bf16": ["a"]}}}


def test_merge_replaces_only_the_recompiled_kernels_rows(tmp_path):
    registered = sorted(jit_kernels())
    kept_kernel, redone, gone = registered[0], registered[1], "_kernel_no_longer_in_the_package"
    old = {
        "command": "mbs compile-check --out docs",
        "planned_compiles": 10,
        "rows": [{"kernel": kept_kernel, "n": 1}, {"kernel": redone, "n": 2}, {"kernel": gone, "n": 3}],
    }
    (tmp_path / "kernels-compiled.json").write_text(json.dumps(old))
    new_rows = [{"kernel": redone, "n": 4}, {"kernel": redone, "n": 5}]
    rows, command, planned = table.merged(new_rows, tmp_path, {redone}, command="mbs compile-check --merge", planned=2)
    assert rows == [{"kernel": kept_kernel, "n": 1}, *new_rows]
    assert command.startswith("mbs compile-check --out docs") and redone in command
    assert planned == 10 - 2 + 2  # the replaced and the unregistered kernels' rows leave the count
    assert table.merged(new_rows, tmp_path / "empty", {redone}, command="c", planned=2) == (new_rows, "c", 2)
