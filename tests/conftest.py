"""Shared test set-up: fresh seeds that print themselves, GPU tests skipped without CUDA."""

import os

import pytest
import torch

# Without CUDA, Triton kernels run under the interpreter; it must be set before triton imports.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

torch.set_num_threads(min(2, os.cpu_count() or 1))


def pytest_addoption(parser):
    parser.addoption(
        "--seed",
        type=int,
        default=None,
        help="seed for the rng fixture (default: a fresh one per test, printed so a failure replays)",
    )


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng(request):
    """A test-local generator seeded by ``--seed`` or freshly drawn; the seed is printed (pytest
    shows it with a failure), so ``pytest --seed N <test>`` replays the failing inputs."""
    seed = request.config.getoption("--seed")
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little")
    print(f"rng seed: {seed} (replay with --seed {seed})")
    return torch.Generator().manual_seed(seed)
