"""Change points of one series (a kernel's time per commit) by E-divisive means.

The detector is Apache Otava's (``otava.analysis.compute_change_points``): E-divisive means
(Matteson & James) splits the series where the energy distance between the parts is largest,
and Otava's variant (Fleming et al., "Hunter") judges each split with a two-sided Student
t-test between the neighbouring segments, then merges away the weak ones. We use the library
rather than our own copy of the algorithm; its optional extra is ``mbs[history]``.

``max_pvalue`` and ``min_segment`` were tuned with ``bench/history_detection.py`` for few
false alarms on step-free noise (docs/reports.md, "Regression history", gives the numbers).
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_PVALUE = 3e-4
MIN_SEGMENT = 2


@dataclass(frozen=True)
class ChangePoint:
    """A step in a series: ``index`` is the first position after the step."""

    index: int
    step: float  # relative change of the segment mean across the step (0.05 = 5% higher)
    p_value: float  # two-sided t-test between the segments either side (confidence = 1 - p_value)


def _otava():
    try:
        from otava.analysis import compute_change_points
    except ImportError:
        raise ValueError("change-point detection needs Apache Otava: pip install 'mbs[history]'") from None
    return compute_change_points


@dataclass(frozen=True)
class Detector:
    """E-divisive means with a t-test significance level and a minimum segment length."""

    max_pvalue: float = MAX_PVALUE
    min_segment: int = MIN_SEGMENT

    def __post_init__(self):
        if not 0 < self.max_pvalue < 1:
            raise ValueError(f"max_pvalue={self.max_pvalue!r}: allowed values are in (0, 1)")
        if self.min_segment < 1:
            raise ValueError(f"min_segment={self.min_segment!r}: allowed values are integers >= 1")

    def change_points(self, values) -> list[ChangePoint]:
        """The significant steps of ``values``, each with at least ``min_segment`` values either side."""
        values = [float(v) for v in values]
        if len(values) < 2 * self.min_segment:
            return []
        found, _ = _otava()(values, window_len=len(values), max_pvalue=self.max_pvalue)
        return [
            ChangePoint(int(cp.index), float(cp.stats.forward_rel_change()), float(cp.stats.pvalue))
            for cp in found
            if self.min_segment <= cp.index <= len(values) - self.min_segment
        ]
