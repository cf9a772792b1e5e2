"""CoSpaDi's Triton gather kernel (after the dense GEMM to the atoms) against the float64 reference."""

import pytest
import torch
from sparse_helpers import CPU_DTYPES, check_backend_matches_reference

import mbs_layers as mbs

CASES = [  # (in, out, atoms, sparsity, tokens): odd sizes, tiles with masked rows and columns
    (40, 70, 20, 5, 37),
    (32, 16, 16, 16, 3),  # every atom used by every output
    (24, 130, 9, 1, 66),
]


@pytest.mark.parametrize("dtype", CPU_DTYPES)
@pytest.mark.parametrize("in_f,out_f,atoms,sparsity,tokens", CASES)
def test_gather_kernel_matches_reference(rng, dtype, in_f, out_f, atoms, sparsity, tokens):
    layer = mbs.build("cospadi", in_f, out_f, atoms=atoms, sparsity=sparsity, dtype=dtype, backend="triton")
    check_backend_matches_reference(layer, tokens, rng)
    assert layer.last_backend == "triton"


def test_gather_kernel_follows_a_new_projection(rng):
    layer = mbs.build("cospadi", 32, 48, atoms=12, sparsity=3, backend="triton", bias=False)
    x = torch.randn(9, 32, generator=rng)
    layer(x)
    layer._project(torch.randn(48, 32, generator=rng))
    torch.testing.assert_close(layer(x), x @ layer.dense_weight().T, rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_gather_kernel_matches_reference_on_gpu(dtype):
    layer = mbs.build("cospadi", 1024, 512, atoms=256, sparsity=64, dtype=dtype, device="cuda")
    assert layer.resolved_backend() == "triton"
    check_backend_matches_reference(layer, 1000)


def test_autotune_configs_keep_accumulators_in_registers():
    """No shared memory is staged, so A100's limit is the registers: ≤ 32 fp32 accumulators a thread."""
    from mbs_layers.kernels.cospadi import _CONFIGS

    for config in _CONFIGS:
        assert config["BLOCK_T"] * config["BLOCK_O"] <= 32 * 32 * config.get("num_warps", 4)
