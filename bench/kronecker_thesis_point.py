"""The thesis's Kronecker projection point: randn(1296, 1296), budget 2592 (36x36 ⊗ 36x36).

    python bench/kronecker_thesis_point.py [--seed 0] [--full-svd]

Prints the hyper-parameters the budget search picks, the relative Frobenius error of
``approximate`` and its wall time, and the Van Loan optimum (the rank-1 tail of the
rearranged matrix's singular values in float64) it must equal. ``--full-svd`` times the same
projection with the full SVD instead of the leading-triplet (ARPACK) path, for before/after.
Run both in the same conditions (the CI machine is shared: timings are noisy).
"""

from __future__ import annotations

import argparse
import time

import torch

import mbs_layers as mbs
from mbs_layers.accuracy.projection import gaussian, project_errors
from mbs_layers.formats import lowrank


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--full-svd", action="store_true", help="disable the ARPACK path")
    args = parser.parse_args()
    if args.full_svd:
        lowrank.LANCZOS_MAX_FRACTION = 0.0
    n, budget = 1296, 2592
    hp = mbs.FORMATS["kronecker"].hparams_for_budget(n, n, budget)
    weight = gaussian(n, args.seed)
    start = time.perf_counter()
    params, errors = project_errors("kronecker", hp, weight, None, args.seed)
    seconds = time.perf_counter() - start
    (m1, m2), (n1, n2) = hp["out_factors"], hp["in_factors"]
    rearranged = weight.double().reshape(m1, m2, n1, n2).permute(0, 2, 1, 3).reshape(m1 * n1, m2 * n2)
    sv = torch.linalg.svdvals(rearranged)
    optimum = (sv[1:].square().sum() / sv.square().sum()).sqrt().item()
    print(f"hparams {hp}, params {params}")
    print(
        f"relative error {errors['rel_frobenius_error'][1]:.6f} in {seconds:.1f} s "
        f"({torch.get_num_threads()} threads); Van Loan optimum {optimum:.6f}"
    )


if __name__ == "__main__":
    main()
