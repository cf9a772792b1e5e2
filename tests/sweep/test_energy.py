"""Energy per call (sweep/energy.py) against a fake NVML on a virtual clock.

The fake counter integrates a known power draw and, like NVML's, only moves every ``period``
seconds; the workload advances the virtual clock by its duration at its own power. So the
exact joules per call are known and the meter's arithmetic, window choice, null-with-reason
paths and record schema can be checked without a GPU.
"""

from __future__ import annotations

import json

import pytest

from mbs_layers.records import ENERGY_KEYS, KERNEL_KEYS, RecordStore
from mbs_layers.sweep import energy
from mbs_layers.sweep.presets import parse_preset


class World:
    """Virtual time and a device drawing ``idle_w`` when idle, ``busy_w`` while a call runs."""

    def __init__(self, *, idle_w=60.0, busy_w=400.0, period=0.05, call_s=1e-3):
        self.t, self.joules = 0.0, 0.0
        self.idle_w, self.busy_w, self.period, self.call_s = idle_w, busy_w, period, call_s

    def advance(self, seconds: float, watts: float) -> None:
        self.t += seconds
        self.joules += seconds * watts

    def clock(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.advance(seconds, self.idle_w)

    def call(self) -> None:
        self.advance(self.call_s, self.busy_w)

    def counter_mj(self) -> int:
        """What NVML reports: the energy at the last update tick, in whole millijoules."""
        ticks = int(self.t / self.period + 1e-9)
        at_tick = self.joules - (self.t - ticks * self.period) * self._recent_power()
        return round(at_tick * 1e3)

    def _recent_power(self) -> float:
        return self.idle_w  # reads happen while waiting (idle) or right after sync


class FakeNvml:
    """The few pynvml calls energy.py makes; ``mode`` selects a device's behaviour."""

    def __init__(self, world: World, *, mode="ok"):
        self.world, self.mode = world, mode
        self.frozen = None
        self.wrap_at_s, self.wrap_by_mj = float("inf"), 0

    def nvmlDeviceGetMigMode(self, handle):
        return (1, 1) if self.mode == "mig" else (0, 0)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if self.mode == "unsupported":
            raise RuntimeError("NVMLError_NotSupported")
        if self.mode == "stall":
            if self.frozen is None:
                self.frozen = self.world.counter_mj()
            return self.frozen
        value = self.world.counter_mj()
        return value - self.wrap_by_mj if self.world.t >= self.wrap_at_s else value

    def nvmlDeviceGetPowerUsage(self, handle):
        return int(self.world.idle_w * 1e3)


def meter_for(world: World, nvml: FakeNvml, **kw) -> energy.EnergyMeter:
    counter = energy.check_nvml_counter(nvml, handle=object())
    if isinstance(counter, str):
        return energy.EnergyMeter(None, counter, sync=lambda: None)
    meter = energy.EnergyMeter(counter, None, sync=lambda: None, clock=world.clock, sleep=world.sleep, **kw)
    period = energy.update_period(counter, clock=world.clock, sleep=world.sleep)
    meter.window_s = energy.choose_window(period)
    meter.resolution = period / meter.window_s
    meter.idle_power_w = meter._idle_power()
    return meter


def test_monotone_counter_gives_joules_per_call_within_the_stated_resolution():
    world = World(idle_w=60.0, busy_w=400.0, period=0.05, call_s=2e-3)
    meter = meter_for(world, FakeNvml(world))
    # a 50 ms update period needs a 2.5 s window for one update to be 2% of it
    assert meter.window_s == pytest.approx(2.5)
    assert meter.resolution == pytest.approx(0.02)
    assert meter.idle_power_w == pytest.approx(60.0, rel=0.03)
    fields = meter.measure(world.call, per_call_s=world.call_s, tokens=128)
    exact = world.busy_w * world.call_s
    assert fields["energy_reason"] is None and fields["energy_source"] == "nvml"
    assert abs(fields["energy_j_per_call"] - exact) <= 2 * fields["energy_resolution"] * exact
    assert fields["energy_j_per_token"] == pytest.approx(fields["energy_j_per_call"] / 128)
    assert fields["energy_avg_power_w"] == pytest.approx(world.busy_w, rel=0.05)
    assert fields["energy_repeats"] == 3 and fields["energy_calls_per_window"] == 1250
    assert fields["energy_window_s"] == pytest.approx(2.5, rel=0.01) and 0 <= fields["energy_spread"] < 0.05
    assert set(fields) == set(ENERGY_KEYS)


def test_a_slow_counter_gets_a_longer_window_and_a_fast_one_the_minimum():
    assert energy.choose_window(0.1) == pytest.approx(5.0)
    assert energy.choose_window(0.001) == energy.MIN_WINDOW_S
    assert energy.choose_window(10.0) == energy.MAX_WINDOW_S


def test_a_wrapped_counter_without_known_range_is_null_with_a_reason():
    world = World(period=0.01)
    world.joules = 1e6  # a counter far from zero
    nvml = FakeNvml(world)
    meter = meter_for(world, nvml)
    # the counter restarts near zero half-way through the first (1 s) window
    nvml.wrap_at_s, nvml.wrap_by_mj = world.t + 0.5, world.counter_mj()
    fields = meter.measure(world.call, per_call_s=world.call_s, tokens=4)
    assert fields["energy_j_per_call"] is None and fields["energy_reason"] == "counter_wrapped"


def test_a_counter_with_a_known_range_is_unfolded():
    class Wrapping:
        source, range_j = "rapl", 100.0

        def __init__(self):
            self.values = iter([90.0, 5.0])

        def read_j(self):
            return next(self.values)

    counter = Wrapping()
    assert energy._delta(counter, 90.0, 5.0) == pytest.approx(15.0)


def test_a_stalled_counter_is_null_with_a_reason():
    world = World()
    counter = energy.check_nvml_counter(FakeNvml(world, mode="stall"), handle=object())
    assert energy.update_period(counter, clock=world.clock, sleep=world.sleep) is None
    meter = energy.EnergyMeter(counter, None, sync=lambda: None, clock=world.clock, sleep=world.sleep)
    fields = meter.measure(world.call, per_call_s=world.call_s, tokens=4)
    assert fields["energy_reason"] == "counter_stalled" and fields["energy_j_per_call"] is None


@pytest.mark.parametrize("mode, reason", [("unsupported", "counter_unsupported"), ("mig", "mig_slice")])
def test_unsupported_devices_are_null_with_a_reason(mode, reason):
    world = World()
    assert energy.check_nvml_counter(FakeNvml(world, mode=mode), handle=object()) == reason
    fields = meter_for(world, FakeNvml(world, mode=mode)).measure(world.call, per_call_s=1e-3, tokens=1)
    assert fields == {**dict.fromkeys(ENERGY_KEYS), "energy_reason": reason}


def test_cpu_runs_read_no_counter_unless_asked_and_rapl_is_absent_here(tmp_path):
    assert energy.open_counter("cpu") == "cpu_not_requested"
    assert energy.open_counter("cpu", "off") == "disabled"
    assert energy.rapl_counter(tmp_path) is None
    with pytest.raises(ValueError, match="reason"):
        energy.null_energy("because")


def test_rapl_sums_packages_and_unfolds_their_wraps(tmp_path):
    for i, (value, span) in enumerate([(900, 1000), (100, 5000)]):
        zone = tmp_path / f"intel-rapl:{i}"
        (zone / "intel-rapl:0:0").mkdir(parents=True)  # a core sub-zone: not counted twice
        (zone / "energy_uj").write_text(str(value))
        (zone / "max_energy_range_uj").write_text(str(span))
    counter = energy.rapl_counter(tmp_path)
    assert counter.source == "rapl" and len(counter.files) == 2
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("50")  # wrapped: +150 uJ
    (tmp_path / "intel-rapl:1" / "energy_uj").write_text("400")  # +300 uJ
    assert counter.read_j() == pytest.approx(450e-6)


def test_power_trace_appends_samples_a_killed_sweep_keeps(tmp_path):
    world = World(idle_w=75.0)
    counter = energy.check_nvml_counter(FakeNvml(world), handle=object())
    path = energy.power_trace_path(tmp_path / "sweep.jsonl")
    assert path.name == "sweep.power.jsonl"
    with energy.PowerTrace(counter, path, "GPU", interval_s=0.005, flush_every=2):
        import time

        time.sleep(0.1)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) >= 3 and {line["power_w"] for line in lines} == {75.0}
    assert all(line["device"] == "GPU" for line in lines)


def test_preset_energy_settings_are_validated():
    base = {"shapes": [[8, 8]], "tokens": [1], "dtypes": ["float32"], "budgets": [0.5]}
    preset = parse_preset("p", {**base, "energy": {"mode": "on", "min_window_s": 2, "repeats": 5}})
    assert (preset.energy_mode, preset.energy_min_window_s, preset.energy_repeats) == ("on", 2.0, 5)
    with pytest.raises(ValueError, match="energy.mode"):
        parse_preset("p", {**base, "energy": {"mode": "always"}})
    with pytest.raises(ValueError, match="energy.repeats"):
        parse_preset("p", {**base, "energy": {"repeats": 0}})


def test_cpu_sweep_records_carry_null_energy_with_a_reason(tmp_path):
    from mbs_layers.sweep import run_sweep

    preset = tmp_path / "tiny.yaml"
    preset.write_text(
        "shapes: [[16, 16]]\ntokens: [4]\ndtypes: [float32]\npasses: [fwd]\n"
        "budgets: [0.5]\nformats: [lowrank]\nbackends: [torch]\n"
        "timer: {warmup: 1, repeats: 3}\npeaks: {gemm_size: 64, copy_mib: 1}\n"
    )
    store = run_sweep(preset, tmp_path / "s.jsonl", device="cpu", progress=False)
    records = RecordStore(store).records()
    assert records and all(set(r) == set(KERNEL_KEYS) for r in records)
    for record in records:
        assert record["energy_j_per_call"] is None
        assert record["energy_reason"] == ("cpu_not_requested" if record["status"] == "ok" else "point_not_ok")
    assert not energy.power_trace_path(store).exists()


def test_energy_points_are_validated_and_name_the_key():
    base = {"shapes": [[8, 8]], "tokens": [1], "dtypes": ["float32"], "budgets": [0.5]}
    preset = parse_preset("p", {**base, "energy": {"points": {"widths": [8], "shapes": [[8, 16]], "tokens": [1]}}})
    assert preset.energy_points == {"tokens": [1], "shapes": [(8, 16), (8, 8)]}
    assert parse_preset("p", base).energy_points is None
    for points, named in [
        ({"dtype": ["float32"]}, "energy.points"),
        ({"dtypes": ["float8"]}, "energy.points.dtypes"),
        ({"tokens": 4}, "energy.points.tokens"),
        ({"formats": ["nope"]}, "energy.points.formats"),
        ({}, "energy.points"),
        ([1], "energy.points"),
    ]:
        with pytest.raises(ValueError, match=named.replace(".", r"\.")):
            parse_preset("p", {**base, "energy": {"points": points}})
    with pytest.raises(ValueError, match="energy"):
        parse_preset("p", {**base, "energy": {"window": 2}})


def test_the_plan_reads_energy_on_the_selected_points_and_their_baselines_only():
    from mbs_layers.sweep.plan import expand

    spec = {
        "shapes": [[32, 32], [16, 16]],
        "tokens": [4, 8],
        "dtypes": ["float32"],
        "passes": ["fwd"],
        "budgets": [0.5],
        "formats": ["lowrank", "blockdiag"],
        "backends": ["torch"],
    }
    assert all(p.energy for p in expand(parse_preset("p", spec), "cpu"))
    points = expand(
        parse_preset("p", {**spec, "energy": {"points": {"formats": ["lowrank"], "tokens": [8], "widths": [32]}}}),
        "cpu",
    )
    chosen = [p for p in points if p.format == "lowrank" and p.tokens == 8 and p.in_features == 32]
    wanted = {p.key for p in chosen} | {b.key for p in chosen for b in (p.dense, p.unstructured) if b}
    assert chosen and {"dense", "unstructured"} <= {p.format for p in points if p.key in wanted}
    assert {p.key for p in points if p.energy} == wanted


def test_a_sweep_marks_the_points_outside_energy_points_not_selected(tmp_path):
    from mbs_layers.sweep import run_sweep

    preset = tmp_path / "tiny.yaml"
    preset.write_text(
        "shapes: [[16, 16]]\ntokens: [4]\ndtypes: [float32]\npasses: [fwd]\n"
        "budgets: [0.5]\nformats: [lowrank, blockdiag]\nbackends: [torch]\n"
        "timer: {warmup: 1, repeats: 3}\npeaks: {gemm_size: 64, copy_mib: 1}\n"
        "energy: {mode: on, points: {formats: [lowrank]}}  # bare on: YAML reads a boolean\n"
    )
    records = [
        r
        for r in RecordStore(run_sweep(preset, tmp_path / "s.jsonl", device="cpu", progress=False)).records()
        if r["status"] == "ok"
    ]
    reasons = {r["format"]: r["energy_reason"] for r in records}
    assert reasons["blockdiag"] == "not_selected"
    # lowrank and its baselines were read (RAPL, or the reason it is unreadable here)
    assert all(reasons[name] != "not_selected" for name in ("lowrank", "dense", "unstructured"))
