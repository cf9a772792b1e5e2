"""The block GEMM chain: blockdiag's Triton backend (one GEMM) against the float64 torch
reference, and a stage's split-K weight gradient.

On CPU the kernels run under TRITON_INTERPRET=1 (conftest), so shapes are small; widths, block
sizes and token counts are deliberately not multiples of the kernels' tiles.
"""

import pytest
import torch
from triton_helpers import check_case_matches_reference, check_case_matches_reference_on_gpu, ids

from mbs_layers.kernels.block_gemm import Stage, strided_map

CASES = [  # (name, in, out, hparams, path the backend takes)
    ("blockdiag", 36, 20, {"nblocks": 4}, "one GEMM"),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("case", CASES, ids=ids)
def test_triton_backend_matches_reference(case, dtype, rng):
    check_case_matches_reference(case, dtype, rng)


@pytest.mark.parametrize("splits", [1, 3])
def test_weight_grad_split_k_matches_reference(splits, rng):
    """dW of Monarch's strided second stage, its token sum cut into 64-token chunks (150 = 64 + 64 + 22)."""
    k, s, q, tokens = 4, 5, 6, 150
    stage = Stage((k, s, q), strided_map(k), strided_map(k))
    x, dy = torch.randn(tokens, k * q, generator=rng), torch.randn(tokens, k * s, generator=rng)
    got = stage.weight_grad(dy, x, torch.empty(k, s, q), splits=splits)
    want = torch.einsum("bsi,bti->ist", dy.double().reshape(tokens, s, k), x.double().reshape(tokens, q, k))
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=str)
@pytest.mark.parametrize("case", CASES, ids=ids)
def test_triton_backend_matches_reference_on_gpu(case, dtype, rng):
    check_case_matches_reference_on_gpu(case, dtype, rng)
