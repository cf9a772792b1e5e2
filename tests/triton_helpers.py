"""Checks of the Triton backends of the factored dense formats (blast, kronecker, tt in
tests/kernels/test_blast.py and test_tt.py; blockdiag, monarch, btt in test_block_gemm.py and
test_monarch.py) against the torch reference: forward and every gradient."""

import torch

import mbs_layers as mbs
from mbs_layers.kernels.monarch import btt_plan, monarch_plan

# ----- blast, kronecker, tt: elementwise on small shapes, normwise on large GPU layers -----
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


# ----- blockdiag, monarch, btt: against the float64 reference, relative to the output scale -----
SCALED_TOL = {torch.float32: 2e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}  # relative to the output scale


PLANS = {"monarch": monarch_plan, "btt": btt_plan}


def ids(case):
    return f"{case[0]}-{case[1]}x{case[2]}-{case[4].replace(' ', '')}"


def weights(layer):
    return [p for n, p in layer.named_parameters() if n != "bias"]


def check_against_reference(layer, run, x, dtype):
    """``run(layer, x)`` in ``dtype`` equals the float64 reference, forward and every gradient."""
    ref = mbs.build(
        layer.name,
        layer.in_features,
        layer.out_features,
        bias=False,
        dtype=torch.float64,
        device=x.device,
        backend="torch",
        **layer.hparams,
    )
    ref.load_state_dict({k: v.double() for k, v in layer.state_dict().items() if k != "bias"})
    x_ref = x.detach().double().requires_grad_()
    x = x.detach().requires_grad_()
    y_ref, y = ref(x_ref), run(layer, x)
    grad = torch.randn_like(y_ref)
    y_ref.backward(grad)
    y.backward(grad.to(y.dtype))
    for got, want in [
        (y, y_ref),
        (x.grad, x_ref.grad),
        *((p.grad, q.grad) for p, q in zip(weights(layer), weights(ref))),
    ]:
        assert got.dtype == dtype
        scale = want.abs().max().item()
        torch.testing.assert_close(got.double(), want, rtol=SCALED_TOL[dtype], atol=SCALED_TOL[dtype] * scale)


def triton_layer(name, in_f, out_f, hp, dtype, device="cpu"):
    return mbs.build(name, in_f, out_f, bias=False, dtype=dtype, device=device, backend="triton", **hp)


def check_case_matches_reference(case, dtype, rng):
    name, in_f, out_f, hp, path = case
    layer = triton_layer(name, in_f, out_f, hp, dtype)
    if name in PLANS:
        assert (PLANS[name](layer).fused is not None) == (path == "fused")
    x = torch.randn(19, in_f, generator=rng).to(dtype)
    check_against_reference(layer, lambda lay, v: lay(v), x, dtype)


def check_case_matches_reference_on_gpu(case, dtype, rng):
    name, in_f, out_f, hp, _ = case
    layer = triton_layer(name, in_f, out_f, hp, dtype, device="cuda")
    x = torch.randn(2500, in_f, generator=rng).to(device="cuda", dtype=dtype)  # enough tokens for split-K dW
    check_against_reference(layer, lambda lay, v: lay(v), x, dtype)
