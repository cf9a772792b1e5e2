"""Interval arithmetic of accuracy repeats: Student-t interval and the separability rule."""

import math
import random

import pytest

from mbs_layers.accuracy.intervals import separable, t_interval
from mbs_layers.accuracy.tables import summary


def test_t_interval_matches_the_textbook_value():
    mean, half = t_interval([1.0, 2.0, 3.0])  # s = 1, n = 3, t_{0.975, 2} = 4.302653
    assert mean == 2.0 and half == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert t_interval([5.0, 5.0])[1] == 0.0
    assert math.isnan(t_interval([0.7])[1])


def test_t_interval_covers_the_true_mean_95_percent_of_the_time():
    rng = random.Random(0)
    trials, covered = 4000, 0
    for _ in range(trials):
        mean, half = t_interval([rng.gauss(10.0, 2.0) for _ in range(3)])
        covered += abs(mean - 10.0) <= half
    assert 0.935 <= covered / trials <= 0.965  # binomial sd at 4000 trials: 0.0034


def test_separable_only_without_overlap():
    assert separable(0.9, 0.01, 0.8, 0.02)
    assert not separable(0.9, 0.06, 0.8, 0.05)  # overlap by 0.01
    assert not separable(0.9, math.nan, 0.1, 0.0)  # one seed: never rankable


def test_bad_input_raises_naming_it():
    with pytest.raises(ValueError, match="values"):
        t_interval([])
    with pytest.raises(ValueError, match="level"):
        t_interval([1.0, 2.0], level=1.5)


def test_summary_tables_carry_the_interval():
    records = [{"format": "f", "hparams": {}, "seed": s, "value": v, "status": "ok"} for s, v in enumerate((1, 2, 3))]
    table = summary(records, ["format"], ["value"])
    assert table["value"].iloc[0] == 2 and table["value_ci95"].iloc[0] == pytest.approx(t_interval([1, 2, 3])[1])
    assert table["seeds"].iloc[0] == 3
