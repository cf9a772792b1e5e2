"""Synthetic kernel and accuracy records that follow the record schema (mbs_layers.records), for report tests.

The sweep and the accuracy experiments are built elsewhere; these records stand in for
their output. Kernel times follow a roofline model (so the roofline fractions and speedups
are mutually consistent); errors follow a simple decreasing law in the parameter count.
"""

from __future__ import annotations

import random

from mbs_layers.predicted import predicted_seconds
from mbs_layers.records import ACCURACY_KEYS, ENERGY_KEYS, KERNEL_KEYS

H100 = "NVIDIA H100 80GB HBM3"
PEAK_FLOPS, PEAK_BYTES = 800e12, 3.0e12  # an H100 as measured: ≈ 800 TFLOP/s bf16 GEMM, ≈ 3.0 TB/s copy


def param_count(fmt: str, n: int, hp: dict) -> int:
    """Parameter count of a square n×n layer in the synthetic formats."""
    return {
        "dense": lambda: n * n,
        "lowrank": lambda: 2 * n * hp.get("rank", 0),
        "monarch": lambda: 2 * n * n // max(hp.get("nblocks", 1), 1),
        "unstructured": lambda: int(n * n * hp.get("density", 0)),
    }[fmt]()


def kernel_record(
    fmt="dense",
    hparams=None,
    *,
    n=1024,
    tokens=256,
    dtype="float16",
    pass_="fwd",
    median_s=1e-4,
    samples=None,
    device=H100,
    status="ok",
    **overrides,
) -> dict:
    """One kernel record with exactly ``KERNEL_KEYS`` (timings null unless ok); ``overrides`` win."""
    hparams = dict(hparams or {})
    params = param_count(fmt, n, hparams)
    flops = 2 * tokens * params
    min_bytes = 2 * (params + 2 * tokens * n)
    bound = min(PEAK_FLOPS, flops / min_bytes * PEAK_BYTES)
    record = {
        "format": fmt,
        "hparams": hparams,
        "in_features": n,
        "out_features": n,
        "tokens": tokens,
        "dtype": dtype,
        "backend": "torch" if fmt == "dense" else "triton",
        "pass": pass_,
        "param_count": params,
        "storage_bytes": 2 * params,
        "flops": flops,
        "min_bytes": min_bytes,
        "median_s": median_s,
        "q10_s": median_s * 0.98,
        "q90_s": median_s * 1.02,
        "samples_s": samples if samples is not None else [median_s] * 5,
        "peak_memory_bytes": 4 * min_bytes,
        "tflops": flops / median_s / 1e12,
        "gbps": min_bytes / median_s / 1e9,
        "roofline_fraction": flops / median_s / bound,
        "speedup_vs_dense": None,
        "speedup_vs_unstructured": None,
        "predicted_s": predicted_seconds(device, dtype, flops, min_bytes),
        "device": device,
        "nvml": {"sm_clock_mhz": 1980, "mem_clock_mhz": 2619, "temperature_c": 55, "power_w": 450.0, "throttled": False}
        if device == H100
        else None,
        "status": status,
        "versions": {"torch": "2.13.0"},
        "commit": "abc1234",
        "hostname": "node0",
        "cpu_threads": None,
        "noisy": False,
        **synthetic_energy(median_s, tokens, measured=device == H100 and status == "ok"),
    }
    if status != "ok":  # a point that was not timed has no timing fields
        record.update(
            dict.fromkeys(
                ("median_s", "q10_s", "q90_s", "samples_s", "tflops", "gbps", "roofline_fraction", "peak_memory_bytes")
            )
        )
    record.update(overrides)
    assert set(record) == set(KERNEL_KEYS)
    return record


def synthetic_energy(median_s: float, tokens: int, *, measured: bool, power_w: float = 450.0) -> dict:
    """Energy fields as a GPU counter would give them (constant power), or null with a reason."""
    if not measured:
        return {**dict.fromkeys(ENERGY_KEYS), "energy_reason": "no_nvml"}
    joules = power_w * median_s
    return {
        "energy_j_per_call": joules,
        "energy_j_per_token": joules / tokens,
        "energy_avg_power_w": power_w,
        "energy_window_s": 1.0,
        "energy_repeats": 3,
        "energy_calls_per_window": max(1, round(1 / median_s)),
        "energy_spread": 0.01,
        "energy_resolution": 0.02,
        "energy_source": "nvml",
        "energy_reason": None,
        "idle_power_w": 70.0,
    }


def accuracy_record(
    fmt="lowrank",
    hparams=None,
    *,
    n=1024,
    value=0.5,
    seed=0,
    metric="rel_error",
    experiment="projection",
    source="gaussian",
    **extras,
) -> dict:
    """One accuracy record: ``ACCURACY_KEYS`` plus ``source`` and any ``extras``."""
    hparams = dict(hparams or {})
    record = {
        "format": fmt,
        "hparams": hparams,
        "in_features": n,
        "out_features": n,
        "param_count": param_count(fmt, n, hparams),
        "experiment": experiment,
        "metric": metric,
        "value": value,
        "seed": seed,
        "source": source,
        **extras,
    }
    assert set(ACCURACY_KEYS) <= set(record)
    return record


BUDGETS = (0.5, 0.25, 0.1, 0.05)


def sweep_hparams(n: int) -> dict:
    """Each synthetic format's settings at about 50%, 25%, 10% and 5% of dense (n × n)."""
    return {
        "lowrank": [{"rank": max(1, int(b * n / 2))} for b in BUDGETS],
        "monarch": [{"nblocks": round(2 / b)} for b in BUDGETS],
        "unstructured": [{"density": b} for b in BUDGETS],
    }


# Relative efficiency of each format's kernel vs its roofline bound.
EFFICIENCY = {"dense": 0.8, "lowrank": 0.6, "monarch": 0.5, "unstructured": 0.05}


def synthetic_sweep(*, widths=(1024, 2048), tokens=(16, 256, 4096), dtype="float16", device=H100, seed=0) -> list[dict]:
    """Kernel records of dense and the synthetic formats over widths × tokens, with speedups."""
    rnd = random.Random(seed)
    out = []
    for n in widths:
        for t in tokens:
            points = [("dense", {})] + [(f, hp) for f, hps in sweep_hparams(n).items() for hp in hps]
            recs = []
            for fmt, hp in points:
                probe = kernel_record(fmt, hp, n=n, tokens=t, dtype=dtype, device=device)
                bound = min(PEAK_FLOPS, probe["flops"] / probe["min_bytes"] * PEAK_BYTES)
                median = probe["flops"] / (bound * EFFICIENCY[fmt]) + 5e-6
                samples = [median * (1 + rnd.gauss(0, 0.01)) for _ in range(10)]
                recs.append(
                    kernel_record(fmt, hp, n=n, tokens=t, dtype=dtype, device=device, median_s=median, samples=samples)
                )
            dense = recs[0]["median_s"]
            for r in recs:
                r["speedup_vs_dense"] = dense / r["median_s"]
            out += recs
    return out


def synthetic_projection(*, n=1024, seeds=(0, 1)) -> list[dict]:
    """Relative projection errors: unstructured lowest, then lowrank, then monarch."""
    quality = {"unstructured": 0.6, "lowrank": 0.8, "monarch": 0.9, "dense": 0.0}
    out = [accuracy_record("dense", n=n, value=0.0, seed=s) for s in seeds]
    for fmt, hps in sweep_hparams(n).items():
        for hp in hps:
            frac = param_count(fmt, n, hp) / (n * n)
            for s in seeds:
                value = quality[fmt] * (1 - frac) ** 0.5 + 0.001 * s
                out.append(accuracy_record(fmt, hp, n=n, value=value, seed=s, budget=frac))
    return out
