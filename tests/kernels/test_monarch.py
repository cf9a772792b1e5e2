"""Triton backends of monarch and btt (fused, or two block GEMMs) against the float64 torch reference.

On CPU the kernels run under TRITON_INTERPRET=1 (conftest), so shapes are small; widths, block
sizes and token counts are deliberately not multiples of the kernels' tiles.
"""

import pytest
import torch
from triton_helpers import (
    PLANS,
    check_against_reference,
    check_case_matches_reference,
    check_case_matches_reference_on_gpu,
    ids,
    triton_layer,
    weights,
)

from mbs_layers.kernels.block_gemm import Plan, run_plan

CASES = [  # (name, in, out, hparams, path the backend takes)
    ("monarch", 36, 36, {"nblocks": 6}, "fused"),  # rank-1 blocks: BTT rank 1
    ("monarch", 32, 48, {"nblocks": 2}, "fused"),  # q = 16, rank 8 per block pair
    ("monarch", 24, 24, {"nblocks": 4}, "two GEMMs"),  # q = 6: block ranks 1 and 2
    ("monarch", 40, 20, {"nblocks": 4}, "two GEMMs"),  # in > out: q = out/k
    ("btt", 30, 20, {"rank": 3, "in_factors": (5, 6), "out_factors": (4, 5)}, "fused"),
    ("btt", 16, 130, {"rank": 2, "in_factors": (2, 8), "out_factors": (130, 1)}, "two GEMMs"),  # m1 > 128
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("case", CASES, ids=ids)
def test_triton_backend_matches_reference(case, dtype, rng):
    check_case_matches_reference(case, dtype, rng)


@pytest.mark.parametrize("case", [c for c in CASES if c[4] == "fused"], ids=ids)
def test_two_gemm_fallback_matches_reference(case, rng):
    """The unfused path of layers that normally run fused (what large ranks/blocks use)."""
    name, in_f, out_f, hp, _ = case
    layer = triton_layer(name, in_f, out_f, hp, torch.float32)
    two_gemms = lambda lay, v: run_plan(Plan(PLANS[name](lay).stages), v, *weights(lay))
    x = torch.randn(21, in_f, generator=rng)
    check_against_reference(layer, two_gemms, x, torch.float32)


def test_triton_backend_rejects_mixed_dtypes():
    layer = triton_layer("monarch", 16, 16, {"nblocks": 4}, torch.float32)
    with pytest.raises(ValueError, match="backend='triton'.*dtype"):
        layer(torch.randn(3, 16, dtype=torch.float16))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=str)
@pytest.mark.parametrize("case", CASES, ids=ids)
def test_triton_backend_matches_reference_on_gpu(case, dtype, rng):
    check_case_matches_reference_on_gpu(case, dtype, rng)
