"""The one Triton N:M kernel (shared by ``semi24`` and ``nm``) against the torch reference."""

import pytest
import torch
from sparse_helpers import CPU_DTYPES, GPU_DTYPES, check_backend_matches_reference, check_follows_a_new_support

import mbs_layers as mbs
from mbs_layers.kernels.nm import nm_metadata

CASES = [
    (1, 2, 38, 21, 9),
    (1, 4, 36, 70, 5),
    (2, 8, 64, 48, 19),
    (4, 8, 40, 24, 33),
    (3, 16, 48, 20, 7),
    (15, 16, 32, 12, 3),
]  # (n, m, in, out, tokens)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("n,m,in_f,out_f,tokens", CASES)
def test_triton_nm_matches_reference_with_gradients(rng, dtype, n, m, in_f, out_f, tokens):
    layer = mbs.build("nm", in_f, out_f, n=n, m=m, dtype=dtype, backend="triton")
    check_backend_matches_reference(layer, tokens, rng)


@pytest.mark.parametrize("n,m", [(1, 4), (2, 8), (15, 16)])
def test_metadata_packs_the_kept_positions(rng, n, m):
    layer = mbs.approximate("nm", torch.randn(5, 2 * m, generator=rng), n=n, m=m)
    meta = nm_metadata(layer).long()
    bits = (m - 1).bit_length()
    positions = torch.stack([(meta >> (j * bits)) & (2**bits - 1) for j in range(n)], -1)
    assert torch.equal(positions.flatten(), layer.cols % m)


def test_triton_nm_follows_a_new_support(rng):
    check_follows_a_new_support(mbs.build("nm", 32, 16, n=1, m=4, backend="triton", bias=False), 9, rng)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("n,m,in_f,out_f,tokens", CASES + [(2, 8, 1024, 512, 1000)])
def test_triton_nm_matches_reference_on_gpu(dtype, n, m, in_f, out_f, tokens):
    layer = mbs.build("nm", in_f, out_f, n=n, m=m, dtype=dtype, device="cuda")
    assert layer.resolved_backend() == "triton"
    check_backend_matches_reference(layer, tokens)


# ----- semi24 (2:4) on the same kernel -----
SEMI24_CASES = [(64, 48, 19), (36, 70, 5), (200, 24, 130)]  # (in, out, tokens): none a multiple of the tiles


@pytest.mark.parametrize("dtype", CPU_DTYPES)
@pytest.mark.parametrize("in_f,out_f,tokens", SEMI24_CASES)
def test_triton_semi24_matches_reference(rng, dtype, in_f, out_f, tokens):
    layer = mbs.build("semi24", in_f, out_f, dtype=dtype, backend="triton")
    check_backend_matches_reference(layer, tokens, rng)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", GPU_DTYPES)
@pytest.mark.parametrize("in_f,out_f,tokens", SEMI24_CASES + [(1024, 512, 1000)])
def test_triton_semi24_matches_reference_on_gpu(dtype, in_f, out_f, tokens):
    layer = mbs.build("semi24", in_f, out_f, dtype=dtype, device="cuda", backend="triton")
    check_backend_matches_reference(layer, tokens)
