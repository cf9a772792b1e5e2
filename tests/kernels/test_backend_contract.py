"""Every (format, backend) pair in the registry keeps the layer contract.

The pairs come from the registry (every format's ``torch`` reference plus every registered
fast backend), so a new format or backend is covered without editing this file. Per pair:
the output equals the float64 reference on fresh random inputs at every dtype the backend
claims (its ``unsupported`` check returns None), the gradients of the input and of every
parameter match, the counts agree with the stored tensors, bad hyper-parameters raise the
named ``ValueError``, and a state dict round-trips into a second layer. Triton runs under
``TRITON_INTERPRET=1`` on CPU (fp32/fp16, small shapes); bfloat16 only on a GPU, since the
interpreter loads bfloat16 wrongly without an error.
"""

import copy

import pytest
import torch

import mbs_layers as mbs
from mbs_layers import backends
from mbs_layers.sweep.workload import TOLERANCE

IN, OUT, TOKENS = 64, 96, 5  # a token count that fills no block exactly
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
PAIRS = sorted(
    [(cls.name, "torch") for cls in mbs.FORMATS.values()]
    + [(cls.name, name) for cls, name in backends.registered_pairs()]
)
DTYPES = [torch.float32, torch.float16, pytest.param(torch.bfloat16, marks=pytest.mark.gpu)]


def half_budget_hparams(name):
    """The format's grid setting whose parameter count is closest to half of dense."""
    cls = mbs.FORMATS[name]
    return min(cls.hparam_grid(IN, OUT), key=lambda hp: abs(cls.count_params(IN, OUT, **hp) - IN * OUT / 2))


def layer_for(name, backend, dtype, seed):
    torch.manual_seed(seed)
    return mbs.build(name, IN, OUT, dtype=dtype, device=DEVICE, backend=backend, **half_budget_hparams(name))


def claimed_or_skip(layer, backend, x):
    """Skip where the backend does not claim this input (that refusal is tested separately)."""
    if backend != "torch":
        reason = backends.fast_backends(type(layer))[backend].unsupported(layer, x)
        if reason is not None:
            pytest.skip(f"{backend} does not claim this input: {reason}")


def rel_err(got, want):
    return (torch.linalg.norm(got.double() - want) / torch.linalg.norm(want).clamp_min(1e-30)).item()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name,backend", PAIRS)
def test_forward_and_gradients_equal_the_reference(name, backend, dtype, rng):
    layer = layer_for(name, backend, dtype, seed=int(torch.randint(1 << 30, (1,), generator=rng)))
    x = torch.randn(TOKENS, IN, generator=rng).to(dtype=dtype, device=DEVICE).requires_grad_(True)
    claimed_or_skip(layer, backend, x.detach())
    reference = copy.deepcopy(layer).double()
    reference.backend = "torch"
    x64 = x.detach().double().requires_grad_(True)
    gy = torch.randn(TOKENS, OUT, generator=rng).to(dtype=dtype, device=DEVICE)

    y = layer(x)
    assert layer.last_backend == backend
    want = reference(x64)
    tol = TOLERANCE[str(dtype).removeprefix("torch.")]
    assert y.dtype == dtype and y.shape == (TOKENS, OUT)
    assert rel_err(y, want) < tol

    params = [p for p in layer.parameters() if p.requires_grad]
    got_grads = torch.autograd.grad(y, [x, *params], gy)
    ref_params = [p for p in reference.parameters() if p.requires_grad]
    want_grads = torch.autograd.grad(want, [x64, *ref_params], gy.double())
    names = ["x", *(n for n, p in layer.named_parameters() if p.requires_grad)]
    for what, got, expected in zip(names, got_grads, want_grads):
        assert got.dtype == dtype
        assert rel_err(got, expected) < 2 * tol, f"gradient of {what}"


@pytest.mark.parametrize("name,backend", PAIRS)
def test_counts_match_the_stored_tensors(name, backend):
    layer = layer_for(name, backend, torch.float32, seed=0)
    cls = type(layer)
    stored = sum(p.numel() for n, p in layer.named_parameters() if n != "bias")
    assert layer.param_count() == cls.count_params(IN, OUT, **layer.hparams) == stored
    assert layer.storage_bytes() >= stored * 4
    # linear in tokens, except that planned formats (tt, kronecker) may pick a cheaper order for more
    assert 0 < layer.forward_flops(TOKENS) < layer.forward_flops(2 * TOKENS) <= 2 * layer.forward_flops(TOKENS)


@pytest.mark.parametrize("name,backend", PAIRS)
def test_bad_hparams_and_unclaimed_inputs_raise_named_valueerror(name, backend):
    cls, hp = mbs.FORMATS[name], half_budget_hparams(name)
    for key in cls.hparam_names:
        with pytest.raises(ValueError, match=key):
            mbs.build(name, IN, OUT, backend=backend, **{**hp, key: -1})
    with pytest.raises(ValueError, match="bogus"):
        mbs.build(name, IN, OUT, backend=backend, bogus=1, **hp)
    if backend == "torch":
        return
    # an input the backend does not claim (float64: no fast backend claims it) raises, naming the backend
    layer = mbs.build(name, IN, OUT, dtype=torch.float64, device=DEVICE, backend=backend, **hp)
    x = torch.randn(TOKENS, IN, dtype=torch.float64, device=DEVICE)
    if backends.fast_backends(cls)[backend].unsupported(layer, x) is not None:
        with pytest.raises(ValueError, match=f"backend='{backend}'"):
            layer(x)


@pytest.mark.parametrize("name,backend", PAIRS)
def test_state_dict_round_trips(name, backend, rng):
    source = layer_for(name, backend, torch.float32, seed=1)
    target = layer_for(name, backend, torch.float32, seed=2)
    target.load_state_dict(source.state_dict())
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key
    x = torch.randn(TOKENS, IN, generator=rng).to(DEVICE)
    claimed_or_skip(source, backend, x)
    torch.testing.assert_close(target(x), source(x), rtol=0, atol=0)


def test_registering_a_pair_twice_names_both():
    cls = mbs.FORMATS["lowrank"]
    taken = backends.fast_backends(cls)["triton"].forward

    def another(layer, x2d):
        return layer._forward_torch(x2d)

    with pytest.raises(ValueError, match=f"{taken.__qualname__}.*{another.__qualname__}"):
        backends.register_backend(cls, "triton")(another)
    assert backends.fast_backends(cls)["triton"].forward is taken
