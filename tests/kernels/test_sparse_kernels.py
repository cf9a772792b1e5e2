"""Fast sparse backends against the torch reference: Triton BSR (CPU interpreter and GPU),
cuSPARSELt 2:4 and cuSPARSE CSR (GPU only)."""
import pytest
import torch
from sparse_helpers import check_backend_matches_reference

import mbs_layers as mbs

CPU_DTYPES = [torch.float32, torch.float16]  # the interpreter loads bfloat16 wrongly
GPU_DTYPES = [torch.float32, torch.float16, torch.bfloat16]


# ----- blocksparse / triton -------------------------------------------------------------
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


# ----- unstructured / cusparse ----------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_csr_function_matches_reference_on_cpu(rng, dtype):
    """The cuSPARSE backend's autograd function, run through torch's CPU CSR kernels."""
    from mbs_layers.kernels.unstructured import unstructured_cusparse

    layer = mbs.build("unstructured", 37, 21, density=0.2, dtype=dtype, backend="torch")
    check_backend_matches_reference(layer, 11, rng, forward=lambda x: unstructured_cusparse(layer, x) + layer.bias)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", GPU_DTYPES)
@pytest.mark.parametrize("in_f,out_f,density,tokens", [(37, 21, 0.2, 11), (1024, 512, 0.05, 1000)])
def test_cusparse_matches_reference_on_gpu(dtype, in_f, out_f, density, tokens):
    layer = mbs.build("unstructured", in_f, out_f, density=density, dtype=dtype, device="cuda")
    assert layer.resolved_backend() == "cusparse"
    check_backend_matches_reference(layer, tokens)


# ----- semi24 / cusparselt --------------------------------------------------------------
@pytest.mark.parametrize("in_f,out_f,dtype,message", [
    (32, 16, torch.float32, r"dtype=torch.float32 is not supported by cuSPARSELt: allowed \[torch.float16"),
    (20, 16, torch.float16, "in_features=20 is not supported by cuSPARSELt: allowed multiples of 16"),
    (32, 24, torch.bfloat16, "out_features=24"),
])
def test_cusparselt_rejects_dtype_and_shape_with_named_error(in_f, out_f, dtype, message):
    layer = mbs.build("semi24", in_f, out_f, dtype=dtype, backend="cusparselt")
    with pytest.raises(ValueError, match=message):
        layer(torch.randn(3, in_f, dtype=dtype))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("in_f,out_f,tokens", [(64, 32, 19), (1024, 512, 1000)])
def test_cusparselt_matches_reference_on_gpu(dtype, in_f, out_f, tokens):
    layer = mbs.build("semi24", in_f, out_f, dtype=dtype, device="cuda")
    assert layer.resolved_backend() == "cusparselt"
    check_backend_matches_reference(layer, tokens)


@pytest.mark.gpu
def test_cusparselt_follows_optimizer_steps():
    from mbs_layers.kernels.semi24_cusparselt import _ALG_IDS

    layer = mbs.build("semi24", 64, 32, dtype=torch.float16, device="cuda", bias=False)
    x = torch.randn(16, 64, dtype=torch.float16, device="cuda")
    layer(x).square().sum().backward()
    assert any(key[:3] == (32, 64, 16) for key in _ALG_IDS)
    torch.optim.SGD(layer.parameters(), lr=0.5).step()
    torch.testing.assert_close(layer(x), x @ layer.dense_weight().T, rtol=1e-2, atol=1e-2)


# ----- semi24 / triton ------------------------------------------------------------------
NM_CASES = [(64, 48, 19), (36, 70, 5), (200, 24, 130)]  # (in, out, tokens): none a multiple of the tiles


@pytest.mark.parametrize("dtype", CPU_DTYPES)
@pytest.mark.parametrize("in_f,out_f,tokens", NM_CASES)
def test_triton_nm_matches_reference(rng, dtype, in_f, out_f, tokens):
    layer = mbs.build("semi24", in_f, out_f, dtype=dtype, backend="triton")
    check_backend_matches_reference(layer, tokens, rng)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", GPU_DTYPES)
@pytest.mark.parametrize("in_f,out_f,tokens", NM_CASES + [(1024, 512, 1000)])
def test_triton_nm_matches_reference_on_gpu(dtype, in_f, out_f, tokens):
    layer = mbs.build("semi24", in_f, out_f, dtype=dtype, device="cuda", backend="triton")
    check_backend_matches_reference(layer, tokens)
