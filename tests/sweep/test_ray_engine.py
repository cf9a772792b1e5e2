"""``mbs sweep --engine ray`` on a real local Ray cluster (2 CPUs, 2 logical GPUs, CPU backends).

The cluster is started with ``ray start --head`` as a user would, and every sweep connects to
it by address: the same points as the local engine, a driver SIGKILLed mid-sweep and re-run
records every point exactly once, a worker killed mid-point is retried once and then recorded
as failed, never a hang.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from mbs_layers.records import RecordStore, point_key
from mbs_layers.sweep import run_sweep
from mbs_layers.sweep.point import KEY_FIELDS
from mbs_layers.sweep.session import SweepSession

ray = pytest.importorskip("ray")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
TINY = """\
shapes: [[32, 32]]
tokens: [8]
dtypes: [float32]
passes: [fwd]
budgets: [0.5]
formats: [lowrank, blockdiag, monarch]
backends: [torch]
timer: {warmup: 1, repeats: 3}
peaks: {gemm_size: 64, copy_mib: 1}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A one-node Ray cluster on loopback with 2 CPUs and 2 logical GPUs; its address."""
    ray_bin = Path(sys.executable).with_name("ray")
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled"}
    subprocess.run(
        [
            str(ray_bin),
            "start",
            "--head",
            "--node-ip-address=127.0.0.1",
            f"--port={port}",
            "--num-cpus=2",
            "--num-gpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ],
        check=True,
        env=env,
        capture_output=True,
        timeout=180,
    )
    address = f"127.0.0.1:{port}"
    ray.init(address=address, logging_level="WARNING", log_to_driver=False)
    yield address
    ray.shutdown()
    subprocess.run([str(ray_bin), "stop", "--force"], env=env, capture_output=True, timeout=120)


def keys(store) -> Counter:
    return Counter(point_key(r, KEY_FIELDS) for r in RecordStore(store))


def test_smoke_preset_gives_the_local_engines_points_once_each(cluster, tmp_path):
    from mbs_layers.sweep.ray_engine import run_sweep_ray

    local = run_sweep("smoke", tmp_path / "local.jsonl", device="cpu", progress=False)
    distributed = run_sweep_ray("smoke", tmp_path / "ray.jsonl", device="cpu", progress=False)
    assert keys(distributed) == keys(local) and set(keys(distributed).values()) == {1}
    records = RecordStore(distributed).records()
    assert all(r["hostname"] == socket.gethostname() for r in records)
    ok = [r for r in records if r["status"] == "ok"]
    assert ok and all(r["median_s"] > 0 for r in ok)


def test_a_driver_killed_mid_sweep_resumes_with_every_point_once(cluster, tmp_path):
    store = tmp_path / "killed.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "mbs_layers",
        "sweep",
        "--engine",
        "ray",
        "--address",
        cluster,
        "--preset",
        "smoke",
        "--out",
        str(store),
        "--device",
        "cpu",
        "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled"}
    driver = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and (not store.exists() or len(store.read_text().splitlines()) < 20):
        assert driver.poll() is None, "the driver finished before it could be killed"
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    partial = sum(keys(store).values())
    assert 20 <= partial < 138
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=300)
    counts = keys(store)
    assert (
        sum(counts.values())
        == len(counts)
        == len(keys(run_sweep("smoke", tmp_path / "l.jsonl", device="cpu", progress=False)))
    )


class KillingSession:
    """A ``SweepSession`` factory whose worker process dies while measuring chosen formats:
    ``once`` formats only on their first attempt (a marker file remembers), ``always`` ones
    every time. It dies a moment into the point, as a crash mid-kernel would, not before the
    previous point's result has left the process."""

    def __init__(self, marker_dir: Path, once: str, always: str):
        self.marker_dir, self.once, self.always = marker_dir, once, always

    def __call__(self, preset, device):
        session = SweepSession(preset, device)
        measure = session.measure

        def dying_measure(point):
            marker = self.marker_dir / f"{point.format}.died"
            if point.format == self.always or (point.format == self.once and not marker.exists()):
                marker.touch()
                time.sleep(1.0)
                os._exit(1)
            return measure(point)

        session.measure = dying_measure
        return session


def test_a_worker_killed_mid_point_is_retried_once_then_recorded_failed(cluster, tmp_path):
    from mbs_layers.sweep.ray_engine import run_sweep_ray

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    preset = tmp_path / "tiny.yaml"
    preset.write_text(TINY)
    factory = KillingSession(tmp_path, once="blockdiag", always="monarch")
    store = run_sweep_ray(
        preset, tmp_path / "s.jsonl", device="cpu", progress=False, session_factory=factory, workers=2
    )
    by_format = {}
    for record in RecordStore(store):
        by_format.setdefault(record["format"], []).append(record)
    assert [r["status"] for r in by_format["blockdiag"]] == ["ok"]  # retried on a fresh worker
    assert len(by_format["monarch"]) == 1
    assert by_format["monarch"][0]["status"].startswith("failed: worker died")
    assert [r["status"] for r in by_format["lowrank"]] == ["ok"]
    assert set(keys(store).values()) == {1}


def test_engine_ray_without_ray_says_how_to_install(monkeypatch, capsys):
    from mbs_layers.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert main(["sweep", "--engine", "ray", "--out", "x.jsonl"]) == 2
    assert "pip install 'mbs[ray]'" in capsys.readouterr().err
