"""What a record says about where it was measured: device name, library versions, git commit."""

from __future__ import annotations

import platform
import socket
import subprocess
from functools import lru_cache
from pathlib import Path

import torch

from ..tuning import device_name
from . import nvml


def _package_version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # noqa: BLE001  (not installed, or running from a source tree)
        return None


@lru_cache(maxsize=1)
def versions() -> dict:
    """Versions of everything that changes kernel timings."""
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    cusparselt = torch.backends.cusparselt.version() if torch.backends.cusparselt.is_available() else None
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cusparselt": cusparselt,
        "triton": triton_version,
        "driver": nvml.driver_version(),
        "mbs": _package_version("mbs"),
    }


@lru_cache(maxsize=1)
def hostname() -> str:
    """The node a record was measured on (a cluster sweep mixes nodes in one store)."""
    return socket.gethostname()


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The source tree's commit (``+dirty`` with uncommitted changes), or None outside git."""
    root = Path(__file__).resolve().parents[2]
    try:

        def git(*args):
            return subprocess.run(
                ["git", "-C", str(root), *args], capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()

        commit = git("rev-parse", "HEAD")
        return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info(device: torch.device, peaks: dict | None) -> dict:
    """Machine-level facts for pytest-benchmark's ``machine_info`` (and the sweep log)."""
    info = {"device": device_name(device), "versions": versions(), "commit": git_commit(), "peaks": peaks}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            sm_count=props.multi_processor_count,
            memory_bytes=props.total_memory,
            l2_bytes=getattr(props, "L2_cache_size", None),
            capability=f"{props.major}.{props.minor}",
        )
    return info
