"""Triton backends of blast / kronecker / tt against the torch reference: forward and all gradients.

On CPU these run under TRITON_INTERPRET=1 (set by conftest), so shapes stay small; sizes are
chosen off the block sizes (70 tokens: one full and one partial 64-row tile; odd block widths)
to exercise every mask.
"""
import pytest
import torch

import mbs_layers as mbs

CASES = [  # (format, in, out, hparams)
    ("blast", 24, 40, {"nblocks": 4, "rank": 5}),
    ("blast", 66, 33, {"nblocks": 3, "rank": 33}),  # rank spans two BLOCK_R chunks
    ("kronecker", 35, 18, {}),
    ("tt", 24, 40, {"cores": 3, "rank": 3}),
    ("tt", 37, 20, {"cores": 2, "rank": 4}),
]
TOL = {torch.float32: {"rtol": 1e-4, "atol": 1e-4}, torch.float16: {"rtol": 2e-2, "atol": 2e-2}}
# Large GPU layers: elementwise tolerances fail on near-zero entries of long bf16 reductions, so
# compare relative Frobenius error instead.
REL_TOL = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 3e-2}


def assert_matches(actual, expected, dtype, elementwise, what):
    if elementwise:
        torch.testing.assert_close(actual, expected, **TOL[dtype], msg=what)
    else:
        err = torch.linalg.norm((actual - expected).float()) / torch.linalg.norm(expected.float())
        assert err < REL_TOL[dtype], f"{what}: relative error {err:.2e}"


def ref_and_fast(name, in_f, out_f, hp, dtype, device):
    ref = mbs.build(name, in_f, out_f, dtype=dtype, device=device, backend="torch", **hp)
    fast = mbs.build(name, in_f, out_f, dtype=dtype, device=device, backend="triton", **hp)
    fast.load_state_dict(ref.state_dict())
    return ref, fast


def check_matches_reference(name, in_f, out_f, hp, dtype, device, tokens=70, elementwise=True):
    ref, fast = ref_and_fast(name, in_f, out_f, hp, dtype, device)
    assert fast.resolved_backend(torch.empty(1, in_f, dtype=dtype, device=device)) == "triton"
    x = torch.randn(tokens, in_f, dtype=dtype, device=device)
    x_ref, x_fast = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ref, y_fast = ref(x_ref), fast(x_fast)
    assert_matches(y_fast, y_ref, dtype, elementwise, "output")
    grad = torch.randn_like(y_ref)
    y_ref.backward(grad)
    y_fast.backward(grad)
    assert_matches(x_fast.grad, x_ref.grad, dtype, elementwise, "input gradient")
    for (pname, p_ref), p_fast in zip(ref.named_parameters(), fast.parameters()):
        assert_matches(p_fast.grad, p_ref.grad, dtype, elementwise, pname)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("name,in_f,out_f,hp", CASES)
def test_triton_matches_reference_cpu_interpreter(name, in_f, out_f, hp, dtype):
    check_matches_reference(name, in_f, out_f, hp, dtype, "cpu")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name,in_f,out_f,hp", CASES + [
    ("blast", 1024, 768, {"nblocks": 16, "rank": 96}),
    ("kronecker", 1024, 768, {}),
    ("tt", 1024, 768, {"cores": 3, "rank": 16}),
])
def test_triton_matches_reference_gpu(name, in_f, out_f, hp, dtype):
    check_matches_reference(name, in_f, out_f, hp, dtype, "cuda", tokens=1000, elementwise=False)


@pytest.mark.parametrize("splits", [1, 3])
def test_mode_product_weight_gradient_over_split_rows(splits):
    from mbs_layers.kernels.tt import launch_wgrad

    dout, s = torch.randn(13, 20, 5), torch.randn(13, 17, 5)  # rows = 65: uneven splits, partial tiles
    torch.testing.assert_close(launch_wgrad(dout, s, splits), torch.einsum("xnm,xkm->nk", dout, s),
                               rtol=1e-4, atol=1e-4)


def test_triton_backend_rejects_mismatched_input_dtype():
    layer = mbs.build("kronecker", 12, 12, dtype=torch.float32, backend="triton")
    with pytest.raises(ValueError, match="backend"):
        layer(torch.randn(3, 12, dtype=torch.float16))
