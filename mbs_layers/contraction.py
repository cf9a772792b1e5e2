"""Cost-ordered pairwise contraction of small tensor networks (the TT / Kronecker chains).

A network is a list of operands, each a tuple of index labels, with a size per label and the
labels the result keeps. :func:`plan` finds, by dynamic programming over subsets of operands
(every binary contraction tree is considered, as in opt_einsum's ``optimal`` path), the order
with the fewest FLOPs whose every intermediate holds at most ``limit`` elements; where no order
fits, it takes the smallest achievable largest intermediate and the cheapest order reaching it.
Networks here have at most 9 operands (x and up to 8 cores), so the 3^n subset pairs are cheap,
and plans are cached per shape.

A pairwise step costs 2 · (product of the sizes of every label of either operand): each output
element sums over the contracted labels. Every label appears in exactly two operands, or in one
operand and the result, so no step needs a separate reduction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class Plan:
    """``steps``: (left, right) operand positions, each result appended to the operand list
    (positions >= len(operands) name earlier results); ``flops`` and ``peak`` (largest result,
    in elements) of executing them."""

    steps: tuple[tuple[int, int], ...]
    flops: int
    peak: int


def _kept(mask: int, operands, output: frozenset) -> frozenset:
    """Labels of the contraction of the operands in ``mask`` still needed outside it."""
    inside = set().union(*(operands[i] for i in range(len(operands)) if mask >> i & 1))
    outside = set(output).union(*(operands[i] for i in range(len(operands)) if not mask >> i & 1))
    return frozenset(inside & outside)


def _best_trees(operands, sizes, output, limit, cost):
    """Per subset mask, the best (score, tree) under ``cost(step_flops, size, left, right)``."""
    n = len(operands)
    full = (1 << n) - 1
    kept = {mask: _kept(mask, operands, output) for mask in range(1, full + 1)}
    size = {mask: math.prod(sizes[i] for i in labels) for mask, labels in kept.items()}
    best = {1 << i: ((0, 0), i) for i in range(n)}
    for mask in sorted(range(1, full + 1), key=lambda m: m.bit_count()):
        if mask in best or size[mask] > limit:
            continue
        low = mask & -mask  # split so that the lowest operand is on the left: each pair once
        sub = (mask - 1) & mask
        while sub:
            if sub & low and (mask ^ sub) in best and sub in best:
                step = 2 * math.prod(sizes[i] for i in kept[sub] | kept[mask ^ sub])
                score = cost(step, size[mask], best[sub][0], best[mask ^ sub][0])
                if mask not in best or score < best[mask][0]:
                    best[mask] = (score, (best[sub][1], best[mask ^ sub][1]))
            sub = (sub - 1) & mask
    return best.get(full)


def _flops_then_peak(step, size, left, right):
    return (left[0] + right[0] + step, max(left[1], right[1], size))


def _peak_only(step, size, left, right):
    return (max(left[0], right[0], size), 0)


@lru_cache(maxsize=4096)
def plan(operands: tuple[tuple, ...], sizes: tuple[tuple, ...], output: tuple, limit: int | None = None) -> Plan:
    """The cheapest contraction order of ``operands`` keeping ``output`` (see the module doc).

    ``sizes`` is a tuple of (label, size) pairs (hashable, so plans are cached).
    """
    size_of = dict(sizes)
    ops = tuple(frozenset(o) for o in operands)
    out = frozenset(output)
    if len(ops) == 1:
        return Plan((), 0, 0)
    found = _best_trees(ops, size_of, out, math.inf if limit is None else limit, _flops_then_peak)
    if found is None:  # nothing fits: the smallest reachable peak, then the fewest FLOPs there
        smallest = _best_trees(ops, size_of, out, math.inf, _peak_only)[0][0]
        found = _best_trees(ops, size_of, out, smallest, _flops_then_peak)
    (flops, peak), tree = found
    steps: list[tuple[int, int]] = []

    def emit(node) -> int:
        if isinstance(node, int):
            return node
        left, right = emit(node[0]), emit(node[1])
        steps.append((left, right))
        return len(ops) + len(steps) - 1

    emit(tree)
    return Plan(tuple(steps), flops, peak)
