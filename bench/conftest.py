"""``pytest bench/ --preset NAME --benchmark-json out.json``: the sweep as a pytest-benchmark suite.

One test per sweep point (``test_sweep.py``); stats carry device seconds (see
``mbs_layers.sweep.pytest_support``), ``extra_info`` the full record, ``machine_info["mbs"]``
the device, versions and the peaks measured at session start. ``--store PATH`` also appends
each record to a JSONL store, except points it already holds for this device (no duplicates
on re-runs). ``pytest bench/ -n auto`` gives each xdist worker its own GPU and merges the
workers' results into the one ``--benchmark-json`` file.
"""

from mbs_layers.sweep.nvml import pin_xdist_worker, visible_gpu_ids

pin_xdist_worker()  # must run before torch initialises CUDA in this worker

import importlib.util

import pytest
import torch

from mbs_layers.records import RecordStore, point_key
from mbs_layers.sweep import environment
from mbs_layers.sweep.plan import expand
from mbs_layers.sweep.point import KEY_FIELDS
from mbs_layers.sweep.presets import PACKAGED, load_preset
from mbs_layers.sweep.pytest_support import UNTIMED_KEY, WORKER_KEY, XdistMerge, dumps, untimed_entry
from mbs_layers.sweep.session import SweepSession, measured_on


def pytest_addoption(parser):
    group = parser.getgroup("mbs", "mbs sweep")
    group.addoption(
        "--preset", default="smoke", help=f"sweep preset: {', '.join(PACKAGED)} or a YAML file (default: smoke)"
    )
    group.addoption("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    group.addoption(
        "--store",
        default=None,
        help="also append each record to this JSONL store "
        "(points it already holds for this device are not appended again)",
    )


if importlib.util.find_spec("xdist"):  # an xdist hook: defining it without xdist is an error

    def pytest_xdist_auto_num_workers(config):
        """``-n auto``: one worker per visible GPU (xdist's CPU count where there is none)."""
        return len(visible_gpu_ids()) or None


class SweepState:
    """Per-process state: the preset, the lazily created session, the untimed records."""

    def __init__(self, config):
        self.config = config
        self.preset = load_preset(config.getoption("preset"))
        self.points = {}  # test parameter (the point's text, JSON-serialisable) -> Point
        device = config.getoption("device") or ("cuda" if torch.cuda.is_available() else "cpu")
        self.device = torch.device(device)
        self.store = RecordStore(config.getoption("store")) if config.getoption("store") else None
        self.session = None
        self._stored_keys = None  # keys of the store's records for this device, loaded on first keep()
        self.untimed = []
        self.harness = []  # bench/test_harness.py results, reported in machine_info

    def get_session(self) -> SweepSession:
        if self.session is None:
            self.session = SweepSession(self.preset, self.device)
        return self.session

    def stored_keys(self) -> set:
        """Keys of the points ``--store`` already holds for this device (the sweep runner's resume rule)."""
        if self._stored_keys is None:
            mine = measured_on(self.store.records(), environment.device_name(self.device))
            self._stored_keys = {point_key(r, KEY_FIELDS) for r in mine}
        return self._stored_keys

    def keep(self, item_nodeid: str, name: str, record: dict) -> None:
        if self.store is not None:
            key = point_key(record, KEY_FIELDS)
            if key not in self.stored_keys():  # re-runs with the same store add no duplicates
                self.store.append(record)
                self._stored_keys.add(key)
        if record["status"] != "ok":
            self.untimed.append(untimed_entry(item_nodeid, name, record))


def sweep_state(config) -> SweepState:
    """The process's :class:`SweepState`, created on first use: pytest-benchmark may ask for
    machine info (``--benchmark-compare``) before our ``pytest_configure`` has run."""
    if getattr(config, "_mbs", None) is None:
        config._mbs = SweepState(config)
    return config._mbs


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    sweep_state(config)
    bench = getattr(config, "_benchmarksession", None)
    if bench is not None and hasattr(config, "workerinput"):
        # pytest-benchmark switches itself off under xdist; each worker owns a GPU, so
        # measure, and ship the JSON to the controller instead of writing it (see below).
        bench.disabled = bench.xdist_warning = False
        bench.json = None
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(XdistMerge(config), "mbs-xdist-merge")


def pytest_generate_tests(metafunc):
    if "point" in metafunc.fixturenames:
        state = sweep_state(metafunc.config)
        state.points = {str(p): p for p in expand(state.preset, state.device.type)}
        # the parameter is the point's text (pytest-benchmark writes params to its JSON);
        # the test looks the Point up in ``sweep.points``
        metafunc.parametrize("point", list(state.points), ids=list(state.points))


@pytest.fixture(scope="session")
def sweep(pytestconfig):
    """The per-process :class:`SweepState` (its session measures the peaks on first use)."""
    return sweep_state(pytestconfig)


def pytest_benchmark_update_machine_info(config, machine_info):
    state = sweep_state(config)
    peaks = state.session.peaks if state.session is not None else None
    machine_info["mbs"] = dict(environment.machine_info(state.device, peaks), harness=state.harness)


def pytest_benchmark_update_json(config, benchmarks, output_json):
    output_json[UNTIMED_KEY] = list(sweep_state(config).untimed)


def pytest_sessionfinish(session):
    config = session.config
    bench = getattr(config, "_benchmarksession", None)
    if hasattr(config, "workeroutput") and bench is not None and (bench.benchmarks or sweep_state(config).untimed):
        doc = config.hook.pytest_benchmark_generate_json(
            config=config,
            benchmarks=bench.benchmarks,
            include_data=True,
            machine_info=bench.get_machine_info(),
            commit_info=config.hook.pytest_benchmark_generate_commit_info(config=config),
        )
        config.hook.pytest_benchmark_update_json(config=config, benchmarks=bench.benchmarks, output_json=doc)
        config.workeroutput[WORKER_KEY] = dumps(doc)
