"""Helpers shared by the sparse format and kernel tests."""

import torch

import mbs_layers as mbs

CPU_DTYPES = [torch.float32, torch.float16]  # the interpreter loads bfloat16 wrongly
GPU_DTYPES = [torch.float32, torch.float16, torch.bfloat16]

# Normwise relative tolerance of a low-precision result against a float64 reference.
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}


def assert_close_to_reference(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """``actual`` matches the float64 ``expected`` within ``actual.dtype``'s tolerance: normwise
    (as the sweep's correctness gate), and elementwise within 5x that, which still catches a single
    wrong entry but not the rounding of a chain of low-precision products (CoSpaDi, DSFormer)."""
    tol = TOLERANCE[actual.dtype]
    actual, expected = actual.double(), expected.double()
    assert torch.linalg.vector_norm(actual - expected) <= tol * torch.linalg.vector_norm(expected) + tol
    torch.testing.assert_close(actual, expected, rtol=5 * tol, atol=5 * tol)


def float64_twin(layer):
    """A float64 copy of ``layer`` on the torch reference backend (same support, same values)."""
    twin = type(layer)(
        layer.in_features,
        layer.out_features,
        bias=layer.bias is not None,
        dtype=torch.float64,
        backend="torch",
        **layer.hparams,
    )
    twin.load_state_dict({k: v.double() if v.is_floating_point() else v for k, v in layer.state_dict().items()})
    return twin


def check_backend_matches_reference(layer, tokens: int, generator=None, forward=None) -> None:
    """Forward and gradients (input and every weight) of ``layer`` (or of ``forward(x)``, a
    backend function applied to it) equal those of its float64 twin."""
    twin = float64_twin(layer)
    forward = forward or layer
    device = next(layer.parameters()).device
    x64 = torch.randn(tokens, layer.in_features, dtype=torch.float64, generator=generator).to(device)
    x = x64.to(layer.weight_dtype).requires_grad_()
    x64 = x.detach().double().cpu().requires_grad_()
    y, y64 = forward(x), twin(x64)
    assert_close_to_reference(y.cpu(), y64)
    grad = torch.randn(y64.shape, dtype=torch.float64, generator=generator)
    y.backward(grad.to(device, y.dtype))
    y64.backward(grad)
    assert_close_to_reference(x.grad.cpu(), x64.grad)
    for (name, p), p64 in zip(layer.named_parameters(), twin.parameters()):
        assert_close_to_reference(p.grad.cpu(), p64.grad), name


def check_follows_a_new_support(layer, tokens: int, generator=None) -> None:
    """After a forward has cached the backend's derived index forms, a projection onto a new
    support is followed: the next forward equals x Wᵀ with the new weight (``layer`` has no bias)."""
    x = torch.randn(tokens, layer.in_features, generator=generator)
    layer(x)
    layer._project(torch.randn(layer.out_features, layer.in_features, generator=generator))
    torch.testing.assert_close(layer(x), x @ layer.dense_weight().T, rtol=1e-4, atol=1e-4)


def dropped_norm(scores_sq: torch.Tensor, kept: int) -> torch.Tensor:
    """Root of the sum of all but the ``kept`` largest squared scores along the last dim."""
    return scores_sq.sort(dim=-1).values[..., : scores_sq.shape[-1] - kept].sum().sqrt()


def check_reference_runs_in(rng, name, hp, dtype) -> None:
    """The torch reference of ``name`` runs in ``dtype`` and matches the float64 product."""
    layer = mbs.build(name, 16, 8, dtype=dtype, backend="torch", bias=False, **hp)
    x = torch.randn(5, 16, generator=rng).to(dtype)
    assert_close_to_reference(layer(x), x.double() @ layer.dense_weight().double().T)
