"""torch.profiler traces of formats at one shape and budget (``mbs profile``).

Each format gets its own directory under ``out_dir`` holding a Chrome-trace JSON written by
``tensorboard_trace_handler``: open it in TensorBoard (``tensorboard --logdir profiles``,
with the torch-tb-profiler plugin) or drag it into https://ui.perfetto.dev.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..registry import FORMATS
from ..validation import check_choice, check_int
from .plan import budget_hparams
from .point import DTYPES, PASSES, Point
from .workload import Workload

WARMUP_STEPS = 2


def parse_shape(shape: str) -> tuple[int, int]:
    """``"INxOUT"`` -> (in_features, out_features)."""
    parts = str(shape).lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"shape={shape!r} must look like IN x OUT, e.g. 1024x4096")
    return check_int("shape in_features", int(parts[0]), low=1), check_int("shape out_features", int(parts[1]), low=1)


def profile_formats(
    formats,
    *,
    shape="1024x1024",
    tokens=1024,
    budget=0.25,
    dtype="float32",
    backend="auto",
    pass_="fwd_bwd",
    device=None,
    steps=3,
    out_dir="profiles",
) -> list[Path]:
    """Profile ``steps`` calls of each format (after warm-up); returns the trace files written."""
    n_in, n_out = parse_shape(shape)
    check_choice("dtype", dtype, DTYPES)
    check_choice("pass", pass_, PASSES)
    check_int("steps", steps, low=1)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    traces = []
    for name in formats:
        check_choice("format", name, sorted(FORMATS))
        hp = budget_hparams(name, n_in, n_out, budget)
        point = Point(name, hp, n_in, n_out, tokens, dtype, backend, pass_)
        work = Workload(point, device)
        trace_dir = Path(out_dir) / f"{name}-{n_in}x{n_out}-t{tokens}-{dtype}-{pass_}"
        trace_dir.mkdir(parents=True, exist_ok=True)
        before = set(trace_dir.glob("*.json"))
        schedule = torch.profiler.schedule(wait=0, warmup=WARMUP_STEPS, active=steps, repeat=1)
        with torch.profiler.profile(
            activities=activities,
            schedule=schedule,
            record_shapes=True,
            on_trace_ready=torch.profiler.tensorboard_trace_handler(str(trace_dir)),
        ) as prof:
            for _ in range(WARMUP_STEPS + steps):
                with torch.profiler.record_function(str(point)):
                    work.run()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                prof.step()
        traces += sorted(set(trace_dir.glob("*.json")) - before)
    return traces
