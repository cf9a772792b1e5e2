"""Triton backends of blockdiag, monarch and btt against the float64 torch reference.

On CPU the kernels run under TRITON_INTERPRET=1 (conftest), so shapes are small; widths, block
sizes and token counts are deliberately not multiples of the kernels' tiles.
"""

import pytest
import torch

import mbs_layers as mbs
from mbs_layers.kernels.block_gemm import Plan, Stage, run_plan, strided_map
from mbs_layers.kernels.monarch import btt_plan, monarch_plan

TOL = {torch.float32: 2e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}  # relative to the output scale
CASES = [  # (name, in, out, hparams, path the backend takes)
    ("blockdiag", 36, 20, {"nblocks": 4}, "one GEMM"),
    ("monarch", 36, 36, {"nblocks": 6}, "fused"),  # rank-1 blocks: BTT rank 1
    ("monarch", 32, 48, {"nblocks": 2}, "fused"),  # q = 16, rank 8 per block pair
    ("monarch", 24, 24, {"nblocks": 4}, "two GEMMs"),  # q = 6: block ranks 1 and 2
    ("monarch", 40, 20, {"nblocks": 4}, "two GEMMs"),  # in > out: q = out/k
    ("btt", 30, 20, {"rank": 3, "in_factors": (5, 6), "out_factors": (4, 5)}, "fused"),
    ("btt", 16, 130, {"rank": 2, "in_factors": (2, 8), "out_factors": (130, 1)}, "two GEMMs"),  # m1 > 128
]
PLANS = {"monarch": monarch_plan, "btt": btt_plan}


def ids(case):
    return f"{case[0]}-{case[1]}x{case[2]}-{case[4].replace(' ', '')}"


def weights(layer):
    return [p for n, p in layer.named_parameters() if n != "bias"]


def check_against_reference(layer, run, x, dtype):
    """``run(layer, x)`` in ``dtype`` equals the float64 reference, forward and every gradient."""
    ref = mbs.build(layer.name, layer.in_features, layer.out_features, bias=False, dtype=torch.float64,
                    device=x.device, backend="torch", **layer.hparams)
    ref.load_state_dict({k: v.double() for k, v in layer.state_dict().items() if k != "bias"})
    x_ref = x.detach().double().requires_grad_()
    x = x.detach().requires_grad_()
    y_ref, y = ref(x_ref), run(layer, x)
    grad = torch.randn_like(y_ref)
    y_ref.backward(grad)
    y.backward(grad.to(y.dtype))
    for got, want in [(y, y_ref), (x.grad, x_ref.grad),
                      *((p.grad, q.grad) for p, q in zip(weights(layer), weights(ref)))]:
        assert got.dtype == dtype
        scale = want.abs().max().item()
        torch.testing.assert_close(got.double(), want, rtol=TOL[dtype], atol=TOL[dtype] * scale)


def triton_layer(name, in_f, out_f, hp, dtype, device="cpu"):
    return mbs.build(name, in_f, out_f, bias=False, dtype=dtype, device=device, backend="triton", **hp)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("case", CASES, ids=ids)
def test_triton_backend_matches_reference(case, dtype, rng):
    name, in_f, out_f, hp, path = case
    layer = triton_layer(name, in_f, out_f, hp, dtype)
    if name in PLANS:
        assert (PLANS[name](layer).fused is not None) == (path == "fused")
    x = torch.randn(19, in_f, generator=rng).to(dtype)
    check_against_reference(layer, lambda lay, v: lay(v), x, dtype)


@pytest.mark.parametrize("case", [c for c in CASES if c[4] == "fused"], ids=ids)
def test_two_gemm_fallback_matches_reference(case, rng):
    """The unfused path of layers that normally run fused (what large ranks/blocks use)."""
    name, in_f, out_f, hp, _ = case
    layer = triton_layer(name, in_f, out_f, hp, torch.float32)
    two_gemms = lambda lay, v: run_plan(Plan(PLANS[name](lay).stages), v, *weights(lay))  # noqa: E731
    x = torch.randn(21, in_f, generator=rng)
    check_against_reference(layer, two_gemms, x, torch.float32)


@pytest.mark.parametrize("splits", [1, 3])
def test_weight_grad_split_k_matches_reference(splits, rng):
    """dW of Monarch's strided second stage, its token sum cut into 64-token chunks (150 = 64 + 64 + 22)."""
    k, s, q, tokens = 4, 5, 6, 150
    stage = Stage((k, s, q), strided_map(k), strided_map(k))
    x, dy = torch.randn(tokens, k * q, generator=rng), torch.randn(tokens, k * s, generator=rng)
    got = stage.weight_grad(dy, x, torch.empty(k, s, q), splits=splits)
    want = torch.einsum("bsi,bti->ist", dy.double().reshape(tokens, s, k), x.double().reshape(tokens, q, k))
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_triton_backend_rejects_mixed_dtypes():
    layer = triton_layer("monarch", 16, 16, {"nblocks": 4}, torch.float32)
    with pytest.raises(ValueError, match="backend='triton'.*dtype"):
        layer(torch.randn(3, 16, dtype=torch.float16))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=str)
@pytest.mark.parametrize("case", CASES, ids=ids)
def test_triton_backend_matches_reference_on_gpu(case, dtype, rng):
    name, in_f, out_f, hp, _ = case
    layer = triton_layer(name, in_f, out_f, hp, dtype, device="cuda")
    x = torch.randn(2500, in_f, generator=rng).to(device="cuda", dtype=dtype)  # enough tokens for split-K dW
    check_against_reference(layer, lambda lay, v: lay(v), x, dtype)
