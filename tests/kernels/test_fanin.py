"""``kernels/fanin.py``: the constant fan-in gather (``lowrank._ell_kernel``) against the torch reference."""

import pytest
import torch
from sparse_helpers import check_backend_matches_reference, check_follows_a_new_support

import mbs_layers as mbs

CASES = [(20, 9, 3, 7), (37, 50, 1, 19), (16, 16, 16, 5), (64, 24, 10, 33)]  # (in, out, fan_in, tokens)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("in_f,out_f,fan_in,tokens", CASES)
def test_triton_fanin_matches_reference_with_gradients(rng, dtype, in_f, out_f, fan_in, tokens):
    layer = mbs.build("fanin", in_f, out_f, fan_in=fan_in, dtype=dtype, backend="triton")
    check_backend_matches_reference(layer, tokens, rng)


def test_triton_fanin_follows_a_new_support(rng):
    check_follows_a_new_support(mbs.build("fanin", 24, 12, fan_in=5, backend="triton", bias=False), 6, rng)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("in_f,out_f,fan_in,tokens", CASES + [(1024, 512, 64, 1000)])
def test_triton_fanin_matches_reference_on_gpu(dtype, in_f, out_f, fan_in, tokens):
    layer = mbs.build("fanin", in_f, out_f, fan_in=fan_in, dtype=dtype, device="cuda")
    assert layer.resolved_backend() == "triton"
    check_backend_matches_reference(layer, tokens)
