"""Projection time of the SVD-based formats over several budgets, with and without SVD reuse.

    python bench/projection_svd_reuse.py [--n 512] [--budgets 0.05 0.2 0.5]

Projects randn(n, n) with lowrank, lowrank_light and sltrain at every budget (as the projection
experiment does), once with ``full_svd``'s cache disabled (before: one SVD per point) and once
enabled (after: one SVD per matrix), and checks the errors are identical. Run it alone: the
shared CI machine makes timings noisy, so compare the two lines of one run.
"""

from __future__ import annotations

import argparse
import time

import torch

import mbs_layers as mbs
from mbs_layers.formats import lowrank

FORMATS = ("lowrank", "lowrank_light", "sltrain")


def project_all(weight: torch.Tensor, budgets) -> tuple[float, list[float]]:
    n = weight.shape[0]
    start, errors = time.perf_counter(), []
    for name in FORMATS:
        for budget in budgets:
            hp = mbs.FORMATS[name].hparams_for_budget(n, n, int(budget * n * n))
            torch.manual_seed(0)
            with torch.no_grad():
                layer = mbs.approximate(name, weight, **hp)
                errors.append(((weight - layer.dense_weight()).norm() / weight.norm()).item())
    return time.perf_counter() - start, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.05, 0.2, 0.5])
    args = parser.parse_args()
    weight = torch.randn(args.n, args.n, generator=torch.Generator().manual_seed(0))
    lowrank.SVD_CACHE_ENTRIES = 0
    before, errors_before = project_all(weight, args.budgets)
    lowrank.SVD_CACHE_ENTRIES = 2
    after, errors_after = project_all(weight, args.budgets)
    assert errors_before == errors_after, (errors_before, errors_after)
    points = len(FORMATS) * len(args.budgets)
    print(
        f"{points} points at {args.n}x{args.n}: one SVD per point {before:.1f} s, "
        f"one SVD per matrix {after:.1f} s, identical errors ({torch.get_num_threads()} threads)"
    )


if __name__ == "__main__":
    main()
