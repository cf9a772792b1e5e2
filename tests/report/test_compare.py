"""mbs compare: a real slowdown is flagged, noise is not, other GPUs/dtypes are never compared."""

import random

import pytest
from synthetic_records import H100, kernel_record

from mbs_layers.cli import main as cli_main
from mbs_layers.compare import classify, compare_files
from mbs_layers.records import RecordStore

A100 = "NVIDIA A100-SXM4-80GB"


def samples(median, noise, n=20, rnd=None):
    rnd = rnd or random.Random()
    return [median * (1 + rnd.gauss(0, noise)) for _ in range(n)]


def write(path, points, *, slowdown=1.0, noise=0.01, device=H100, dtype="float16", seed=None):
    """A store with one record per (format, hparams, tokens) point, timings scaled by ``slowdown``."""
    rnd = random.Random(seed)
    store = RecordStore(path)
    for fmt, hp, tokens, median in points:
        s = samples(median * slowdown, noise, rnd=rnd)
        store.append(
            kernel_record(
                fmt, hp, n=256, tokens=tokens, median_s=sorted(s)[len(s) // 2], samples=s, device=device, dtype=dtype
            )
        )
    return path


POINTS = [("dense", {}, 64, 1e-4), ("lowrank", {"rank": 16}, 64, 5e-5), ("lowrank", {"rank": 16}, 1024, 3e-4)]


@pytest.mark.parametrize("seed", range(5))
def test_ten_percent_slowdown_with_tight_noise_is_flagged(tmp_path, seed):
    base = write(tmp_path / "base.jsonl", POINTS, seed=seed)
    new = write(tmp_path / "new.jsonl", POINTS, slowdown=1.10, seed=seed + 100)
    table, missing, _ = compare_files(base, new)
    assert missing == [] and len(table) == len(POINTS)
    assert (table["verdict"] == "regression").all()
    assert cli_main(["compare", str(base), str(new)]) == 1


@pytest.mark.parametrize("seed", range(5))
def test_pure_noise_is_not_flagged(tmp_path, seed):
    base = write(tmp_path / "base.jsonl", POINTS, noise=0.03, seed=seed)
    new = write(tmp_path / "new.jsonl", POINTS, noise=0.03, seed=seed + 100)
    table, _, _ = compare_files(base, new)
    assert len(table) == len(POINTS) and (table["verdict"] == "unchanged").all()
    assert cli_main(["compare", str(base), str(new)]) == 0


def test_speedup_is_an_improvement_not_a_failure(tmp_path):
    base = write(tmp_path / "base.jsonl", POINTS, seed=1)
    new = write(tmp_path / "new.jsonl", POINTS, slowdown=0.8, seed=2)
    assert (compare_files(base, new)[0]["verdict"] == "improvement").all()
    assert cli_main(["compare", str(base), str(new)]) == 0


def test_other_gpus_and_dtypes_are_not_compared(tmp_path, capsys):
    base = write(tmp_path / "base.jsonl", POINTS, device=A100, seed=1)
    new = write(tmp_path / "new.jsonl", POINTS, slowdown=3.0, seed=2)
    table, missing, _ = compare_files(base, new)
    assert table.empty and missing == [(H100, "float16")]
    assert cli_main(["compare", str(base), str(new)]) == 2
    assert f"no baseline for {H100} / float16" in capsys.readouterr().out
    other_dtype = write(tmp_path / "bf16.jsonl", POINTS, slowdown=3.0, dtype="bfloat16", seed=3)
    assert compare_files(write(tmp_path / "h100.jsonl", POINTS, seed=4), other_dtype)[0].empty


def test_large_noise_hides_a_small_slowdown_and_few_samples_are_untested():
    rnd = random.Random(0)
    assert classify(samples(1.0, 0.2, rnd=rnd), samples(1.06, 0.2, rnd=rnd))[2] == "unchanged"
    ratio, p, verdict = classify([1.0, 1.0], [2.0, 2.0])
    assert (ratio, p, verdict) == (2.0, None, "untested")
    # a significant but tiny shift is below the minimum effect size
    assert classify(samples(1.0, 0.001, rnd=rnd), samples(1.02, 0.001, rnd=rnd))[2] == "unchanged"


def test_too_few_repeats_for_the_test_to_reach_alpha_is_untested_not_unchanged():
    """3 + 3 samples: the one-sided p-value is at least 1/20 > 0.01, so it can prove nothing."""
    from mbs_layers.compare import classify

    ratio, p, verdict = classify([1.0, 1.01, 1.02], [2.0, 2.01, 2.02])
    assert verdict == "untested" and ratio > 1.9
    assert classify([1.0, 1.01, 1.02, 1.0, 1.01, 1.0], [2.0, 2.01, 2.02, 2.0, 2.01, 2.0])[2] == "regression"
