"""The device check: everything mbs can only prove on a GPU, in one run of at most ~5 minutes.

    python bench/gpu_check.py                 # on one A100/H100/H200; results under $OUT (or .)
    TRITON_INTERPRET=1 python bench/gpu_check.py --tiny --out /tmp/check   # CPU rehearsal

Steps (each says what it skips without CUDA): the environment record; ``pytest -m gpu tests/``;
a correctness-and-speed sweep of every fast backend against the torch reference at bf16 and
fp16 on a 4096 x 4096 layer with 4096 tokens; short subsets of the ``kernels`` and
``sparse24`` presets. Everything lands in ``<out>/bench/results/<gpu-name>/``; the last thing
printed is one summary table (correct?, ms, speed-up vs dense, % of roofline, per format and
backend). ``--tiny`` shrinks every shape so the whole script runs on a CPU under the
Triton interpreter. See docs/benchmarking.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from mbs_layers.datasheet import datasheet_peaks
from mbs_layers.records.files import load_results
from mbs_layers.sweep import environment
from mbs_layers.sweep.runner import run_sweep

FAST_BACKENDS = ["torch", "triton", "cusparselt", "cusparse"]
CUDA_ONLY = {
    "sparse24-short": "sparse24 subset (cuSPARSELt is CUDA-only)",
    "energy": "energy sweep (it reads the GPU's energy counter)",
}


def sweeps(tiny: bool, formats: list[str] | str) -> dict[str, dict]:
    """The presets this check runs (name -> preset mapping); ``tiny`` shrinks every shape."""
    width, tokens, big = (64, 32, 64) if tiny else (4096, 4096, 8192)
    timer = {"warmup": 1, "repeats": 2} if tiny else {"warmup": 3, "repeats": 10}
    peaks = {"gemm_size": 64, "copy_mib": 1} if tiny else {}
    # energy windows cost seconds a point: the speed checks skip them, one small sweep measures them
    common = {"timer": timer, "peaks": peaks, "backends": FAST_BACKENDS, "energy": {"mode": "off"}}
    return {
        "check": {
            **common,
            "description": "every fast backend vs the torch reference, bf16 and fp16",
            "widths": [width],
            "tokens": [tokens],
            "dtypes": ["bfloat16", "float16"],
            "passes": ["fwd"],
            "budgets": [0.25],
            "formats": formats,
        },
        "kernels-short": {
            **common,
            "description": "the kernels preset at one point: bf16 forward+backward",
            "widths": [width],
            "tokens": [tokens],
            "dtypes": ["bfloat16"],
            "passes": ["fwd_bwd"],
            "budgets": [0.1],
            "formats": formats,
        },
        "sparse24-short": {
            **common,
            "description": "the sparse24 preset, bf16 only",
            "widths": [big],
            "tokens": [big],
            "dtypes": ["bfloat16"],
            "passes": ["fwd"],
            "budgets": [0.5],
            "formats": ["dense", "semi24"],
        },
        "energy": {
            **common,
            "description": "energy per call (NVML) of dense and low-rank, bf16 forward",
            "widths": [width],
            "tokens": [tokens],
            "dtypes": ["bfloat16"],
            "passes": ["fwd"],
            "budgets": [0.1],
            "formats": ["dense", "lowrank"],
            "energy": {"mode": "auto", "repeats": 3},
        },
    }


def gpu_slug(device: torch.device) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", environment.device_name(device)).strip("-") or "unknown"


def write_environment(folder: Path, device: torch.device) -> None:
    info = environment.machine_info(device, datasheet_peaks(environment.device_name(device)))
    (folder / "environment.json").write_text(json.dumps(info, indent=1, default=str) + "\n")
    if shutil.which("nvidia-smi"):
        smi = subprocess.run(["nvidia-smi", "-q"], capture_output=True, text=True, check=False)
        (folder / "nvidia-smi.txt").write_text(smi.stdout + smi.stderr)


def run_gpu_tests(folder: Path, cuda: bool) -> str:
    if not cuda:
        print("gpu_check: no CUDA device: skipping `pytest -m gpu tests/`", flush=True)
        return "skipped (no CUDA)"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", str(ROOT / "tests")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    (folder / "pytest-gpu.txt").write_text(done.stdout + done.stderr)
    last = (done.stdout.strip().splitlines() or ["(no output)"])[-1]
    print(f"gpu_check: pytest -m gpu: {last}", flush=True)
    return last


def status_text(status: str) -> str:
    if status == "ok":
        return "yes"
    return "NO (wrong result)" if "wrong" in status else status.split(":")[0]


def _num(record: dict, key: str, scale: float = 1.0, fmt: str = "{:.3f}") -> str:
    value = record.get(key)
    return fmt.format(value * scale) if isinstance(value, (int, float)) and not math.isnan(value) else "-"


def summary(stores: list[Path]) -> str:
    """One row per (preset, format, backend, dtype, pass): correct?, ms, speed-up, % roofline."""
    frame = load_results([str(p) for p in stores if p.exists()])
    header = (
        f"{'preset':<15} {'format':<14} {'backend':<11} {'dtype':<9} {'pass':<8} {'correct?':<18} "
        f"{'ms':>9} {'x dense':>8} {'% roof':>7} {'predicted ms':>12}"
    )
    lines = [header, "-" * len(header)]
    for r in frame.sort_values(["source_file", "format", "backend", "dtype", "pass"]).to_dict("records"):
        lines.append(
            f"{Path(r['source_file']).stem:<15} {r['format']:<14} {r['backend']:<11} {r['dtype']:<9} "
            f"{r['pass']:<8} {status_text(str(r['status']))[:18]:<18} {_num(r, 'median_s', 1e3):>9} "
            f"{_num(r, 'speedup_vs_dense', fmt='{:.2f}'):>8} "
            f"{_num(r, 'roofline_fraction', 100, '{:.1f}'):>7} {_num(r, 'predicted_s', 1e3):>12}"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "."), help="root of bench/results/ (default $OUT or .)")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes: a CPU rehearsal under TRITON_INTERPRET=1")
    parser.add_argument("--formats", default="all", help="comma-separated formats (default all)")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available()
    if not cuda and not args.tiny:
        print(
            "gpu_check: error: no CUDA device; use --tiny (with TRITON_INTERPRET=1) for a CPU rehearsal",
            file=sys.stderr,
        )
        return 2
    device = torch.device("cuda" if cuda else "cpu")
    folder = Path(args.out) / "bench" / "results" / gpu_slug(device)
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    write_environment(folder, device)
    tests = run_gpu_tests(folder, cuda)
    formats = "all" if args.formats == "all" else ["dense", *args.formats.split(",")]
    stores = []
    for name, spec in sweeps(args.tiny, formats).items():
        if name in CUDA_ONLY and not cuda:
            print(f"gpu_check: no CUDA device: skipping the {CUDA_ONLY[name]}", flush=True)
            continue
        preset = folder / f"{name}.yaml"
        preset.write_text(yaml.safe_dump(spec, sort_keys=False))
        print(f"gpu_check: sweep {name} ({time.perf_counter() - start:.0f} s so far)", flush=True)
        stores.append(run_sweep(preset, folder / f"{name}.jsonl", device=str(device), progress=False))
    table = summary(stores)
    (folder / "summary.txt").write_text(f"pytest -m gpu: {tests}\n\n{table}\n")
    print(f"gpu_check: results in {folder} ({time.perf_counter() - start:.0f} s); pytest -m gpu: {tests}")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
