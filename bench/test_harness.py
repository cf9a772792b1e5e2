"""The harness itself, benchmarked: its median for fixed GEMMs vs ``triton.testing.do_bench``.

GPU only. Targets (issue 4): medians within 3% of do_bench, and repeat-to-repeat spread
(coefficient of variation) <= 2% for kernels >= 100 us. The numbers land in
``machine_info["mbs"]["harness"]`` of the benchmark JSON and a warning flags a miss; no
assertion, since a timing is a measurement, not a correctness property.
"""

import statistics
import warnings

import pytest
import torch

from mbs_layers.sweep.pytest_support import REPLAY_CLOCK, replay
from mbs_layers.sweep.timer import CudaTimer, summarize

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
AGREEMENT, SPREAD, LONG_KERNEL_S = 0.03, 0.02, 100e-6


@pytest.mark.benchmark(timer=REPLAY_CLOCK, group="harness")
@pytest.mark.parametrize("n", [2048, 4096, 8192])
def test_harness_vs_do_bench(n, benchmark, sweep):
    from triton.testing import do_bench

    a, b = (torch.randn(n, n, device=sweep.device, dtype=torch.float16) for _ in range(2))

    def gemm():
        return a @ b

    timer = CudaTimer(sweep.device, warmup=10, repeats=100)
    samples = timer.measure(gemm)
    ours = summarize(samples)
    reference_s = do_bench(gemm, warmup=25, rep=200, return_mode="median") / 1e3
    result = {
        "gemm": f"{n}x{n}x{n} float16",
        "median_s": ours["median_s"],
        "do_bench_median_s": reference_s,
        "ratio": ours["median_s"] / reference_s,
        "cv": statistics.stdev(samples) / statistics.mean(samples),
        "cuda_graph": timer.used_graph,
    }
    sweep.harness.append(result)
    replay(benchmark, samples)
    if abs(result["ratio"] - 1) > AGREEMENT or (ours["median_s"] >= LONG_KERNEL_S and result["cv"] > SPREAD):
        warnings.warn(f"harness off target: {result}", stacklevel=1)
