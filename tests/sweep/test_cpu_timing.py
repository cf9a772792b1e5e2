"""CPU timing rules: pinned threads (recorded), warm-up until stable, enough repeats for the
compare test, far-out outliers dropped, spread too large flagged ``noisy``."""

import math

import torch
from sweep_helpers import FIXED_PEAKS

from mbs_layers.compare import classify
from mbs_layers.sweep.plan import expand
from mbs_layers.sweep.presets import load_preset
from mbs_layers.sweep.session import SweepSession
from mbs_layers.sweep.timer import MIN_CPU_REPEATS, CpuTimer, drop_outliers, is_noisy


def test_threads_are_pinned_while_timing_and_restored():
    seen = []
    before = torch.get_num_threads()
    CpuTimer(threads=1, min_repeat_s=0.0).measure(lambda: seen.append(torch.get_num_threads()))
    assert set(seen) == {1} and torch.get_num_threads() == before


def test_enough_repeats_for_the_compare_test_to_reach_alpha():
    samples = CpuTimer(repeats=3, min_repeat_s=0.0).measure(lambda: None)
    assert len(samples) >= MIN_CPU_REPEATS - 3  # the preset's 3 is raised; outliers may go
    assert 1 / math.comb(2 * MIN_CPU_REPEATS, MIN_CPU_REPEATS) < 0.01
    slow = [2.0 + i * 1e-3 for i in range(MIN_CPU_REPEATS)]
    assert classify([1.0 + i * 1e-3 for i in range(MIN_CPU_REPEATS)], slow)[2] == "regression"


def test_warm_up_runs_until_two_batches_agree():
    durations = iter([10.0, 5.0, 1.0, 1.0] + [1.0] * 100)  # first calls slow (compilation, caches)
    clock = {"t": 0.0}

    def fn():
        clock["t"] += next(durations)

    timer = CpuTimer(warmup=1, repeats=MIN_CPU_REPEATS, min_repeat_s=0.0, max_warmup_s=1e9)
    import mbs_layers.sweep.timer as timer_module

    real = timer_module.time.perf_counter
    timer_module.time.perf_counter = lambda: clock["t"]
    try:
        samples = timer.measure(fn)
    finally:
        timer_module.time.perf_counter = real
    assert samples == [1.0] * MIN_CPU_REPEATS  # none of the 10 s / 5 s warm-up calls is a sample


def test_far_out_slow_repeats_are_dropped_and_fast_ones_kept():
    samples = [1.0, 1.01, 1.02, 0.99, 1.0, 1.03, 0.98, 1.0, 12.0, 0.5]
    kept = drop_outliers(samples)
    assert 12.0 not in kept and 0.5 in kept and len(kept) == 9


def test_a_spread_point_is_noisy():
    assert is_noisy([1.0, 1.0, 1.0, 3.0, 3.0, 3.0, 1.0, 3.0])
    assert not is_noisy([1.0, 1.01, 1.02, 0.99, 1.0])


def test_records_carry_threads_and_noisy():
    preset = load_preset("smoke")
    session = SweepSession(preset, "cpu", peaks=FIXED_PEAKS)
    point = next(p for p in expand(preset, "cpu") if p.format == "lowrank" and p.pass_ == "fwd")
    record = session.measure(point)
    assert record["status"] == "ok" and record["cpu_threads"] == 1 and isinstance(record["noisy"], bool)
    dense = next(r for r in session._records.values() if r["format"] == "dense")
    assert record["noisy"] >= dense["noisy"]  # a speed-up over a noisy baseline is flagged too
