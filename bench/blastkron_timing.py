"""Time the blast / kronecker / tt Triton backends against their torch reference and cuBLAS dense.

    python bench/blastkron_timing.py --out bench/results/<gpu>/blastkron_timing.json

in = out = 4096, bf16, tokens in {256, 4096, 16384}, forward and forward+backward, two settings
per format (``SETTINGS``). Timing is
``triton.testing.do_bench`` (CUDA events, L2 flushed before every repeat, median and 10/90%
quantiles) after a correctness check against the reference. The roofline bound uses peaks
measured here: a bf16 8192³ GEMM and a 1 GiB device copy.
"""
from __future__ import annotations

import argparse
import json
import os

import torch
import triton
from triton.testing import do_bench

import mbs_layers as mbs

SIZE = 4096
TOKENS = (256, 4096, 16384)
DTYPE = torch.bfloat16
# BLAST at ~10% and ~25% of dense params; Kronecker's default (64, 64) ⊗ (64, 64) (0.05%);
# TT at ranks 8 and 16 (0.1%, 0.4%): a 3-core TT's middle core costs 2·T·r²·m·n/16 FLOPs here, so
# rank 16 already matches the dense GEMM's FLOPs (rank 80, ~10% of params, would be 25× dense).
SETTINGS = [
    ("blast", {"nblocks": 16, "rank": 192}), ("blast", {"nblocks": 16, "rank": 480}),
    ("kronecker", {}), ("tt", {"cores": 3, "rank": 8}), ("tt", {"cores": 3, "rank": 16}),
]


def measured_peaks() -> tuple[float, float]:
    """(bf16 GEMM FLOP/s, device-copy bytes/s) measured on this device."""
    a = torch.randn(8192, 8192, device="cuda", dtype=DTYPE)
    gemm_s = do_bench(lambda: a @ a, warmup=25, rep=200) * 1e-3
    src = torch.empty(2**29, device="cuda", dtype=torch.float16)
    dst = torch.empty_like(src)
    copy_s = do_bench(lambda: dst.copy_(src), warmup=25, rep=200) * 1e-3
    return 2 * 8192**3 / gemm_s, 2 * src.numel() * src.element_size() / copy_s


def min_bytes(layer, tokens: int, passes: str) -> int:
    """Compulsory traffic: x, y, weights (fwd); plus dy, x, weights, dx, weight grads (bwd)."""
    n, m, p = layer.in_features, layer.out_features, layer.param_count()
    elems = tokens * (n + m) + p if passes == "fwd" else tokens * (3 * n + 2 * m) + 3 * p
    return elems * DTYPE.itemsize


def timed(layer, x, passes: str) -> list[float]:
    """[median, q10, q90] seconds of one forward (or forward+backward) of ``layer`` on ``x``."""
    if passes == "fwd":
        def fn():
            with torch.no_grad():
                layer(x)
    else:
        grad = torch.randn(x.shape[0], layer.out_features, device="cuda", dtype=DTYPE)
        x = x.detach().requires_grad_()

        def fn():
            layer(x).backward(grad)
    return [t * 1e-3 for t in do_bench(fn, warmup=25, rep=200, quantiles=[0.5, 0.1, 0.9])]


def layer_pair(name, hp):
    """(torch-reference layer, triton layer) with equal weights."""
    ref = mbs.build(name, SIZE, SIZE, bias=False, dtype=DTYPE, device="cuda", backend="torch", **hp)
    fast = mbs.build(name, SIZE, SIZE, bias=False, dtype=DTYPE, device="cuda", backend="triton", **hp)
    fast.load_state_dict(ref.state_dict())
    return ref, fast


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    peak_flops, peak_bw = measured_peaks()
    dense = mbs.build("dense", SIZE, SIZE, bias=False, dtype=DTYPE, device="cuda")
    records = []
    print(f"peaks: {peak_flops / 1e12:.0f} TFLOP/s bf16 GEMM, {peak_bw / 1e9:.0f} GB/s copy")
    print(f"{'format':10} {'hparams':46} {'tokens':>6} {'pass':7} {'dense ms':>9} {'torch ms':>9} "
          f"{'triton ms':>9} {'vs torch':>8} {'vs dense':>8} {'roofline':>8}")
    for name, hp in SETTINGS:
        ref, fast = layer_pair(name, hp)
        for tokens in TOKENS:
            x = torch.randn(tokens, SIZE, device="cuda", dtype=DTYPE)
            torch.testing.assert_close(fast(x), ref(x), rtol=5e-2, atol=5e-2)
            for passes in ("fwd", "fwd_bwd"):
                t_dense, t_ref, t_fast = (timed(lay, x, passes) for lay in (dense, ref, fast))
                flops = fast.forward_flops(tokens) * (1 if passes == "fwd" else 3)
                bound = max(flops / peak_flops, min_bytes(fast, tokens, passes) / peak_bw)
                rec = {"format": name, "hparams": fast.hparams, "in_features": SIZE, "out_features": SIZE,
                       "tokens": tokens, "dtype": "bfloat16", "backend": "triton", "pass": passes,
                       "param_count": fast.param_count(), "flops": flops,
                       "min_bytes": min_bytes(fast, tokens, passes), "median_s": t_fast[0],
                       "q10_s": t_fast[1], "q90_s": t_fast[2], "torch_median_s": t_ref[0],
                       "dense_median_s": t_dense[0], "speedup_vs_torch": t_ref[0] / t_fast[0],
                       "speedup_vs_dense": t_dense[0] / t_fast[0], "roofline_fraction": bound / t_fast[0],
                       "device": torch.cuda.get_device_name(), "peak_flops": peak_flops, "peak_bw": peak_bw,
                       "versions": {"torch": torch.__version__, "triton": triton.__version__}}
                records.append(rec)
                print(f"{name:10} {json.dumps(rec['hparams']):46} {tokens:6} {passes:7} {t_dense[0] * 1e3:9.3f} "
                      f"{t_ref[0] * 1e3:9.3f} {t_fast[0] * 1e3:9.3f} {rec['speedup_vs_torch']:8.2f} "
                      f"{rec['speedup_vs_dense']:8.2f} {rec['roofline_fraction']:8.2f}", flush=True)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(records, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
