"""Argument checks that raise ``ValueError`` naming the parameter and the allowed values.

Every format validates its hyper-parameters with these before touching torch, so a bad
combination never surfaces as a shape error from deep inside a kernel.
"""

from __future__ import annotations

from collections.abc import Iterable


def check_int(name: str, value, *, low: int | None = None, high: int | None = None) -> int:
    """``value`` must be an int (not bool) with ``low <= value <= high``."""
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            import numpy as np

            if isinstance(value, np.integer):
                value = int(value)
            else:
                raise TypeError
        except TypeError:
            raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if (low is not None and value < low) or (high is not None and value > high):
        lo = "-inf" if low is None else str(low)
        hi = "inf" if high is None else str(high)
        raise ValueError(f"{name}={value} is out of range: allowed {lo} <= {name} <= {hi}")
    return value


def check_float(name: str, value, *, low: float, high: float, low_open=False) -> float:
    """``value`` must be a real number in ``[low, high]`` (``(low, high]`` if ``low_open``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    bad_low = value <= low if low_open else value < low
    if bad_low or value > high or value != value:
        bracket = "(" if low_open else "["
        raise ValueError(f"{name}={value} is out of range: allowed {bracket}{low}, {high}]")
    return value


def check_divides(name: str, value: int, dim_name: str, dim: int) -> None:
    """``value`` must divide ``dim`` exactly."""
    if dim % value:
        allowed = divisors(dim)
        shown = allowed if len(allowed) <= 24 else allowed[:12] + ["..."] + allowed[-4:]
        raise ValueError(f"{name}={value} must divide {dim_name}={dim}: allowed {name} in {shown}")


def check_choice(name: str, value, allowed: Iterable) -> None:
    """``value`` must be one of ``allowed``."""
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported: allowed {allowed}")


def divisors(n: int) -> list[int]:
    """All positive divisors of ``n`` in increasing order."""
    small = [d for d in range(1, int(n**0.5) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def check_finite_float(name: str, tensor) -> None:
    """``tensor`` (None allowed) must have a floating dtype and only finite values."""
    if tensor is None:
        return
    if not tensor.is_floating_point():
        raise ValueError(f"{name} must have a floating dtype (float32, float16, bfloat16, ...), got {tensor.dtype}")
    if tensor.numel() and not bool(tensor.isfinite().all()):
        bad = int((~tensor.isfinite()).sum())
        raise ValueError(f"{name} has {bad} non-finite value(s) (NaN or inf): allowed finite values only")


def check_device(name: str, text: str):
    """``text`` as a ``torch.device`` this build and machine can use; ``ValueError`` otherwise."""
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"{name}={text!r} is not a torch device: allowed e.g. 'cpu', 'cuda', 'cuda:0' ({err})"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name}={text!r}: this torch build or machine has no usable CUDA device: allowed 'cpu'")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"{name}={text!r}: allowed cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    elif device.type != "cpu":
        raise ValueError(f"{name}={text!r} is not supported: allowed 'cpu' or 'cuda[:N]'")
    return device


def check_output_path(name: str, path, *, folder: bool = False) -> None:
    """``path`` must be a writable file (or ``folder``) location: not the other kind, and its
    nearest existing ancestor a writable directory. Checked before any long work starts."""
    import os
    from pathlib import Path

    path = Path(path)
    kind = "folder" if folder else "file"
    if path.exists() and path.is_dir() != folder:
        raise ValueError(f"{name}={str(path)!r} is a {'file' if folder else 'directory'}: allowed a {kind} path")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise ValueError(f"{name}={str(path)!r} is not writable")
        return
    ancestor = path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise ValueError(f"{name}={str(path)!r} cannot be created: {str(ancestor)!r} is not a writable directory")
