"""The accuracy tests run on one torch thread (an autouse fixture for every module here)."""

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Run the module's tests on one torch thread, then restore the setting.

    The experiments' small SVDs and models are faster on one thread, and on a shared 2-core
    machine two contended OpenMP threads make LAPACK's SVD 10-30x slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
