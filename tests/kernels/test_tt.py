"""Triton backend of tt and kronecker (a two-core chain of rank 1) against the torch reference:
forward and all gradients; the mode-product weight gradient.

On CPU these run under TRITON_INTERPRET=1 (set by conftest), so shapes stay small; sizes are
chosen off the block sizes (70 tokens: one full and one partial 64-row tile; odd block widths)
to exercise every mask.
"""

import pytest
import torch
from triton_helpers import check_matches_reference

import mbs_layers as mbs

CASES = [  # (format, in, out, hparams)
    ("kronecker", 35, 18, {}),
    ("tt", 24, 40, {"cores": 3, "rank": 3}),
    ("tt", 37, 20, {"cores": 2, "rank": 4}),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("name,in_f,out_f,hp", CASES)
def test_triton_matches_reference_cpu_interpreter(name, in_f, out_f, hp, dtype):
    check_matches_reference(name, in_f, out_f, hp, dtype, "cpu")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    "name,in_f,out_f,hp",
    CASES
    + [
        ("kronecker", 1024, 768, {}),
        ("tt", 1024, 768, {"cores": 3, "rank": 16}),
    ],
)
def test_triton_matches_reference_gpu(name, in_f, out_f, hp, dtype):
    check_matches_reference(name, in_f, out_f, hp, dtype, "cuda", tokens=1000, elementwise=False)


@pytest.mark.parametrize("splits", [1, 3])
def test_mode_product_weight_gradient_over_split_rows(splits):
    from mbs_layers.kernels.tt import launch_wgrad

    dout, s = torch.randn(13, 20, 5), torch.randn(13, 17, 5)  # rows = 65: uneven splits, partial tiles
    torch.testing.assert_close(
        launch_wgrad(dout, s, splits), torch.einsum("xnm,xkm->nk", dout, s), rtol=1e-4, atol=1e-4
    )


def test_triton_backend_rejects_mismatched_input_dtype():
    layer = mbs.build("kronecker", 12, 12, dtype=torch.float32, backend="triton")
    with pytest.raises(ValueError, match="backend"):
        layer(torch.randn(3, 12, dtype=torch.float16))
