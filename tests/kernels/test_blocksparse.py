"""The Triton BSR backend of blocksparse against the torch reference (CPU interpreter and GPU)."""

import pytest
import torch
from sparse_helpers import CPU_DTYPES, GPU_DTYPES, check_backend_matches_reference

import mbs_layers as mbs

BSR_CASES = [  # (in, out, block, density, tokens): odd tokens, non power-of-2 and > 64 blocks
    (40, 48, 8, 0.5, 19),
    (72, 48, 24, 0.5, 33),
    (160, 80, 80, 0.5, 7),
    (64, 96, 16, 0.01, 5),  # a single tile: most block rows and columns are empty
]


@pytest.mark.parametrize("dtype", CPU_DTYPES)
@pytest.mark.parametrize("in_f,out_f,block,density,tokens", BSR_CASES)
def test_triton_bsr_matches_reference(rng, dtype, in_f, out_f, block, density, tokens):
    layer = mbs.build("blocksparse", in_f, out_f, block=block, density=density, dtype=dtype, backend="triton")
    check_backend_matches_reference(layer, tokens, rng)


def test_triton_bsr_follows_a_new_support(rng):
    layer = mbs.build("blocksparse", 32, 32, block=16, density=0.5, backend="triton", bias=False)
    x = torch.randn(9, 32, generator=rng)
    layer(x)  # builds and caches the tile lists of the initial support
    target = torch.randn(32, 32, generator=rng)
    layer._project(target)
    torch.testing.assert_close(layer(x), x @ layer.dense_weight().T, rtol=1e-4, atol=1e-4)


def test_auto_uses_torch_on_cpu():
    layer = mbs.build("blocksparse", 32, 32, block=16, density=0.5)
    assert layer.resolved_backend() == "torch"


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", GPU_DTYPES)
@pytest.mark.parametrize("in_f,out_f,block,density,tokens", BSR_CASES + [(1024, 512, 64, 0.1, 1000)])
def test_triton_bsr_matches_reference_on_gpu(dtype, in_f, out_f, block, density, tokens):
    layer = mbs.build("blocksparse", in_f, out_f, block=block, density=density, dtype=dtype, device="cuda")
    assert layer.resolved_backend() == "triton"
    check_backend_matches_reference(layer, tokens)
