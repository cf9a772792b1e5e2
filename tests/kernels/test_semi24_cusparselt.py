"""The cuSPARSELt 2:4 backend of semi24: named errors for what it cannot run, and the
torch reference (GPU only)."""

import pytest
import torch
from sparse_helpers import check_backend_matches_reference

import mbs_layers as mbs


@pytest.mark.parametrize(
    "in_f,out_f,dtype,message",
    [
        (32, 16, torch.float32, r"dtype=torch.float32 is not supported by cuSPARSELt: allowed \[torch.float16"),
        (20, 16, torch.float16, "in_features=20 is not supported by cuSPARSELt: allowed multiples of 16"),
        (32, 24, torch.bfloat16, "out_features=24"),
    ],
)
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
