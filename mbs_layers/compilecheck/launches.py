"""The Triton launches a backend makes, captured without a GPU.

The backends run on CPU tensors with ``JITFunction.run`` and ``Autotuner.run`` replaced by a
recorder, so every launch a format's forward and backward would make is seen with its real
arguments (shapes, strides, constexpr flags) but no kernel runs; outputs stay uninitialised.
This keeps the signatures in one place, the launchers, instead of a hand-written copy.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import pkgutil
from dataclasses import dataclass, field
from unittest import mock

import torch
from triton.runtime.autotuner import Autotuner
from triton.runtime.interpreter import InterpretedFunction
from triton.runtime.jit import JITFunction

from .. import backends

# Float32 runs either at IEEE precision (torch's default) or TF32 when the user allows it.
DTYPES = {
    "bf16": (torch.bfloat16, False),
    "fp16": (torch.float16, False),
    "fp32-ieee": (torch.float32, False),
    "fp32-tf32": (torch.float32, True),
}


@dataclass
class Launch:
    """One call ``kernel[grid](*args, **kwargs)``; ``tuner`` is its autotuner (None if fixed)."""

    kernel: JITFunction
    tuner: Autotuner | None
    args: tuple
    kwargs: dict
    origin: str = ""  # "format/pass" that made it
    dtype: str = ""

    @property
    def name(self) -> str:
        return self.kernel.__name__

    def named(self) -> dict:
        """The launch's arguments by parameter name."""
        return {**dict(zip(self.kernel.arg_names, self.args)), **self.kwargs}


@dataclass
class Recorder:
    launches: list[Launch] = field(default_factory=list)

    @contextlib.contextmanager
    def active(self):
        def run_tuner(tuner, *args, grid, warmup=False, **kwargs):
            self.launches.append(Launch(tuner.fn, tuner, args, kwargs))

        def run_jit(jit, *args, grid, warmup=False, **kwargs):
            self.launches.append(Launch(jit, None, args, kwargs))

        with (
            mock.patch.object(Autotuner, "run", run_tuner),
            mock.patch.object(JITFunction, "run", run_jit),
            mock.patch.object(backends, "triton_runs_on", lambda device: True),
        ):
            yield self


def kernel_modules() -> list:
    """Every module of ``mbs_layers.kernels`` (importing them registers the backends)."""
    from .. import kernels

    return [importlib.import_module(f"{kernels.__name__}.{i.name}") for i in pkgutil.iter_modules(kernels.__path__)]


def jit_kernels() -> dict[str, object]:
    """Every ``@triton.jit`` function launched as a kernel, by name (compiled or, under
    ``TRITON_INTERPRET=1``, interpreted): helpers that other kernels call (``_span(...)`` inside
    a kernel's source) are left out, autotuned ones unwrapped."""
    found = {}
    for module in kernel_modules():
        for _, obj in inspect.getmembers(module):
            fn = obj.fn if isinstance(obj, Autotuner) else obj
            if isinstance(fn, (JITFunction, InterpretedFunction)) and fn.fn.__module__ == module.__name__:
                found[fn.fn.__name__] = fn
    sources = {name: inspect.getsource(fn.fn) for name, fn in found.items()}
    return {
        name: fn
        for name, fn in found.items()
        if not any(f"{name}(" in src for other, src in sources.items() if other != name)
    }


@contextlib.contextmanager
def _restoring_tf32(value: bool):
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = value


def capture(
    format_name: str, hparams: dict, shape=(4096, 4096), tokens: int = 4096, dtype: str = "bf16"
) -> list[Launch]:
    """The launches of ``format_name``'s Triton backend, forward and backward (inputs and weights)."""
    import mbs_layers as mbs

    torch_dtype, tf32 = DTYPES[dtype]
    layer = mbs.build(format_name, *shape, bias=False, dtype=torch_dtype, device="cpu", backend="triton", **hparams)
    x = torch.randn(tokens, shape[0], dtype=torch_dtype, requires_grad=True)
    recorder, was_tf32 = Recorder(), torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    with recorder.active(), _restoring_tf32(was_tf32):
        n = len(recorder.launches)
        y = layer(x)
        for launch in recorder.launches[n:]:
            launch.origin = f"{format_name}/fwd"
        n = len(recorder.launches)
        y.backward(torch.ones_like(y))
        for launch in recorder.launches[n:]:
            launch.origin = f"{format_name}/bwd"
    for launch in recorder.launches:
        launch.dtype = dtype
    return recorder.launches
