"""The cuSPARSE CSR backend of unstructured against the torch reference (its autograd function
through torch's CPU CSR kernels; cuSPARSE itself on a GPU)."""

import pytest
import torch
from sparse_helpers import GPU_DTYPES, check_backend_matches_reference

import mbs_layers as mbs


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
