"""Helpers shared by the sparse format and kernel tests."""
import torch

# Comparison tolerance (rtol = atol) of a low-precision result against a float64 reference.
TOLERANCE = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}


def assert_close_to_reference(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """``actual`` matches the float64 ``expected`` within ``actual.dtype``'s tolerance."""
    tol = TOLERANCE[actual.dtype]
    torch.testing.assert_close(actual.double(), expected.double(), rtol=tol, atol=tol)
