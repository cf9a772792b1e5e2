"""A sweep killed mid-way and re-run with the same store: nothing duplicated, nothing missing."""

import subprocess
import sys
import time

from sweep_helpers import ROOT, clean_env

from mbs_layers.records import RecordStore, point_key
from mbs_layers.sweep.plan import expand
from mbs_layers.sweep.point import KEY_FIELDS
from mbs_layers.sweep.presets import load_preset

# Slow enough (~0.05 s a point) to be killed part-way through.
PRESET = """
shapes: [[128, 128]]
tokens: [64, 256]
dtypes: [float32]
budgets: [0.5, 0.2]
formats: [dense, lowrank]
timer: {warmup: 1, repeats: 20}
peaks: {gemm_size: 64, copy_mib: 1}
"""


def test_killed_sweep_resumes_without_duplicates(tmp_path):
    preset, store = tmp_path / "resume.yaml", tmp_path / "store.jsonl"
    preset.write_text(PRESET)
    cmd = [sys.executable, "-m", "mbs_layers", "sweep", "--preset", str(preset), "--out", str(store), "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if store.exists() and len(store.read_text().splitlines()) >= 3:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the sweep ended before it could be killed"
    proc.kill()
    proc.wait()
    before = store.read_text().splitlines()
    expected = [p.key for p in expand(load_preset(preset), "cpu")]
    assert 3 <= len(before) < len(expected)
    with store.open("a") as fh:  # a kill in the middle of a write leaves a torn line
        fh.write('{"format": "dense", "hpar')

    subprocess.run(cmd, cwd=ROOT, env=clean_env(), check=True, capture_output=True, timeout=300)

    assert store.read_text().splitlines()[: len(before)] == before  # append-only
    keys = [point_key(r, KEY_FIELDS) for r in RecordStore(store)]
    assert len(keys) == len(set(keys))
    assert set(keys) == set(expected)
