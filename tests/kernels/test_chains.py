"""DSFormer and ARMOR fast paths (each stage on its format's kernel) against the float64 reference."""

import pytest
import torch
from sparse_helpers import CPU_DTYPES, check_backend_matches_reference

import mbs_layers as mbs

CASES = [  # (format, in, out, hparams, tokens): odd token counts, rectangular, non power-of-2 widths
    ("dsformer", 32, 16, {"rank": 8}, 19),
    ("dsformer", 48, 40, {"rank": 12}, 5),
    ("armor", 32, 16, {"block": 8}, 19),
    ("armor", 48, 72, {"block": 12}, 7),
]


def perturbed(layer, rng):
    """``layer`` with its ARMOR wrappers moved off the identity (a fresh ARMOR layer starts there)."""
    if layer.name == "armor":
        with torch.no_grad():
            for wrapper in (layer.stages[0], layer.stages[2]):
                noise = torch.randn(wrapper.blocks.shape, generator=rng) / wrapper.blocks.shape[-1]
                wrapper.blocks.add_(noise.to(wrapper.blocks))
    return layer


@pytest.mark.parametrize("dtype", CPU_DTYPES)
@pytest.mark.parametrize("name,in_f,out_f,hp,tokens", CASES)
def test_triton_chain_matches_reference(rng, dtype, name, in_f, out_f, hp, tokens):
    layer = perturbed(mbs.build(name, in_f, out_f, dtype=dtype, backend="triton", **hp), rng)
    check_backend_matches_reference(layer, tokens, rng)
    assert layer.last_backend == "triton"


@pytest.mark.parametrize("name,hp", [("dsformer", {"rank": 8}), ("armor", {"block": 8})])
def test_cusparselt_chain_names_the_stage_that_cannot_run(name, hp):
    layer = mbs.build(name, 32, 32, dtype=torch.float32, backend="cusparselt", **hp)
    with pytest.raises(ValueError, match=r"its semi24 stage \(32 → .*\): dtype=torch.float32 is not supported"):
        layer(torch.randn(3, 32))
    assert mbs.build(name, 32, 32, **hp).resolved_backend() == "torch"  # auto on CPU


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["triton", "cusparselt"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name,hp", [("dsformer", {"rank": 256}), ("armor", {"block": 32})])
def test_chain_backends_match_reference_on_gpu(backend, dtype, name, hp):
    layer = mbs.build(name, 512, 256, dtype=dtype, device="cuda", backend=backend, **hp)
    check_backend_matches_reference(perturbed(layer, None), 1000)
