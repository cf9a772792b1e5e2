"""Shared by the tests/sweep/test_sweep_*.py files: repository root, subprocess environment, presets."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXED_PEAKS = {"flops": {"float32": 1e11}, "bandwidth": 1e10, "source": {}, "datasheet": None}


def clean_env() -> dict:
    """The environment for a nested run: ours, single-threaded, without the outer pytest/xdist markers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"  # tiny matmuls on a shared 2-core box: threads only contend
    return env


def write_preset(path: Path, **overrides) -> Path:
    """A tiny user preset (YAML) with ``overrides`` replacing its keys."""
    import yaml

    spec = {
        "shapes": [[32, 32]],
        "tokens": [4],
        "dtypes": ["float32"],
        "passes": ["fwd", "fwd_bwd"],
        "budgets": [0.5],
        "formats": ["dense", "lowrank"],
        "timer": {"warmup": 0, "repeats": 2},
    }
    spec.update(overrides)
    path.write_text(yaml.safe_dump(spec))
    return path
