"""Shared test set-up: float64 helpers, fresh seeds, GPU tests skipped without CUDA."""
import os

import torch

# Without CUDA, Triton kernels run under the interpreter; it must be set before triton imports.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng():
    """A fresh, test-local generator so inputs differ between tests but runs are reproducible."""
    return torch.Generator().manual_seed(int.from_bytes(os.urandom(4), "little"))
