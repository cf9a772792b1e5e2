"""Timing of the sparse backends (issue 3): each fast backend vs its torch reference vs dense.

    python bench/sparse_timing.py --out bench/results/sparse_<gpu>.json       # on a GPU
    TRITON_INTERPRET=1 python bench/sparse_timing.py --size 64 --tokens 8 --device cpu  # smoke

Every point is checked against the torch reference before it is timed. GPU times come from
``triton.testing.do_bench`` (warm-up, L2 flushed between repeats, median and 10/90% quantiles);
roofline fractions use a GEMM peak and a copy bandwidth measured at start-up. Also compares the
BSR kernel with PyTorch's ``torch.sparse._triton_ops.bsr_dense_mm`` and 2:4 with dense at 8192³.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import mbs_layers as mbs

POINTS = [  # (format, hparams, backends): about half of dense's parameters each
    ("dense", {}, ["torch"]),
    ("unstructured", {"density": 0.5}, ["torch", "cusparse"]),
    ("semi24", {}, ["torch", "cusparselt", "triton"]),
    ("blocksparse", {"block": 64, "density": 0.5}, ["torch", "triton"]),
    ("blocksparse", {"block": 64, "density": 0.1}, ["torch", "triton"]),
]


def time_s(fn, device) -> tuple[float, float, float]:
    """(median, q10, q90) seconds of ``fn()``."""
    if device == "cuda":
        import triton.testing

        ms = triton.testing.do_bench(fn, warmup=25, rep=200, quantiles=[0.5, 0.1, 0.9])
        return tuple(v / 1e3 for v in ms)
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    q = statistics.quantiles(samples, n=10)
    return statistics.median(samples), q[0], q[-1]


def measured_peaks(dtype, device) -> dict:
    """GEMM FLOP/s at 8192³ (1024³ on CPU) and device-copy bytes/s, measured now."""
    n = 8192 if device == "cuda" else 1024
    a, b = (torch.randn(n, n, dtype=dtype, device=device) for _ in range(2))
    gemm = time_s(lambda: a @ b, device)[0]
    src = torch.empty(2**28 if device == "cuda" else 2**22, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    copy = time_s(lambda: dst.copy_(src), device)[0]
    return {"flops_per_s": 2 * n**3 / gemm, "bytes_per_s": 2 * src.numel() / copy}


def step(layer, x, grad, pass_):
    """The timed callable: a forward without autograd, or forward + backward."""
    if pass_ == "fwd":
        def run():
            with torch.no_grad():
                layer(x)
    else:
        def run():
            layer(x).backward(grad)
    return run


def check(layer, backend, x) -> str | None:
    """None when ``backend`` matches the torch reference on ``x``, else the failure."""
    with torch.no_grad():
        layer.backend = "torch"
        expected = layer(x)
        layer.backend = backend
        got = layer(x)
    tol = 2e-2 if x.dtype in (torch.float16, torch.bfloat16) else 1e-3
    err = ((got - expected).norm() / expected.norm()).item()
    return None if err < tol else f"failed: wrong result (relative error {err:.2e})"


def record(fmt, layer, backend, tokens, pass_, times, peaks, dtype):
    median, q10, q90 = times
    factor = 1 if pass_ == "fwd" else 3  # backward: grad_x and grad_W, each ~ a forward
    flops = factor * layer.forward_flops(tokens)
    elem = dtype.itemsize
    min_bytes = layer.storage_bytes() + tokens * (layer.in_features + layer.out_features) * elem
    bound = max(flops / peaks["flops_per_s"], min_bytes / peaks["bytes_per_s"])
    return {"format": fmt, "hparams": layer.hparams, "in_features": layer.in_features,
            "out_features": layer.out_features, "tokens": tokens, "dtype": str(dtype), "backend": backend,
            "pass": pass_, "param_count": layer.param_count(), "storage_bytes": layer.storage_bytes(),
            "flops": flops, "min_bytes": min_bytes, "median_s": median, "q10_s": q10, "q90_s": q90,
            "tflops": flops / median / 1e12, "roofline_fraction": bound / median, "status": "ok"}


def sweep(size, tokens_list, dtype, device, peaks) -> list[dict]:
    rows = []
    for fmt, hp, backends in POINTS:
        layer = mbs.build(fmt, size, size, dtype=dtype, device=device, **hp)
        for tokens in tokens_list:
            x = torch.randn(tokens, size, dtype=dtype, device=device)
            grad = torch.randn(tokens, size, dtype=dtype, device=device)
            for backend in backends:
                for pass_ in ("fwd", "fwd_bwd"):
                    base = {"format": fmt, "hparams": hp, "tokens": tokens, "backend": backend, "pass": pass_}
                    try:
                        failure = check(layer, backend, x)
                        if failure:
                            rows.append({**base, "status": failure})
                            continue
                        times = time_s(step(layer, x.requires_grad_(pass_ == "fwd_bwd"), grad, pass_), device)
                        rows.append(record(fmt, layer, backend, tokens, pass_, times, peaks, dtype))
                    except (RuntimeError, ValueError) as err:  # OOM, unsupported, compile errors
                        rows.append({**base, "status": f"failed: {type(err).__name__}: {str(err)[:200]}"})
                    x = x.detach()
                    layer.zero_grad(set_to_none=True)
    dense = {(r["tokens"], r["pass"]): r["median_s"] for r in rows
             if r["format"] == "dense" and r["status"] == "ok"}
    for r in rows:
        if r["status"] == "ok" and (r["tokens"], r["pass"]) in dense:
            r["speedup_vs_dense"] = dense[(r["tokens"], r["pass"])] / r["median_s"]
    return rows


def bsr_vs_torch_triton(size, tokens_list, dtype, device) -> list[dict]:
    """Our BSR forward vs PyTorch's Triton ``bsr_dense_mm`` on the same weights (GPU only)."""
    from torch.sparse._triton_ops import bsr_dense_mm

    rows = []
    for block, density in ((64, 0.5), (64, 0.1), (32, 0.1)):
        layer = mbs.build("blocksparse", size, size, block=block, density=density, dtype=dtype,
                          device=device, backend="triton", bias=False)
        bsr = layer.dense_weight().detach().to_sparse_bsr((block, block))
        for tokens in tokens_list:
            x = torch.randn(tokens, size, dtype=dtype, device=device)
            with torch.no_grad():
                ours = time_s(lambda: layer(x), device)[0]
                theirs = time_s(lambda: bsr_dense_mm(bsr, x.T), device)[0]
            rows.append({"block": block, "density": density, "tokens": tokens, "ours_s": ours,
                         "torch_bsr_dense_mm_s": theirs, "ours_speedup": theirs / ours})
    return rows


def semi24_vs_dense_8192(dtype, device) -> dict:
    """2:4 (cuSPARSELt) vs cuBLAS dense at 8192³, forward."""
    x = torch.randn(8192, 8192, dtype=dtype, device=device)
    times = {}
    for fmt in ("dense", "semi24"):
        layer = mbs.build(fmt, 8192, 8192, dtype=dtype, device=device, bias=False)
        with torch.no_grad():
            times[f"{fmt}_{layer.resolved_backend(x)}_s"] = time_s(lambda: layer(x), device)[0]
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--tokens", type=int, nargs="+", default=[256, 4096, 16384])
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    peaks = measured_peaks(dtype, args.device)
    result = {"device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
              "versions": {"torch": torch.__version__}, "peaks": peaks,
              "records": sweep(args.size, args.tokens, dtype, args.device, peaks)}
    if args.device == "cuda":
        result["bsr_vs_torch_bsr_dense_mm"] = bsr_vs_torch_triton(args.size, args.tokens, dtype, args.device)
        result["semi24_vs_dense_8192"] = semi24_vs_dense_8192(dtype, args.device)
    for r in result["records"]:
        if r["status"] == "ok":
            print(f"{r['format']:12} {str(r['hparams']):32} T={r['tokens']:<6} {r['backend']:10} {r['pass']:8}"
                  f" {r['median_s'] * 1e3:9.3f} ms  {r['tflops']:7.1f} TFLOP/s"
                  f"  roofline {r['roofline_fraction']:.2f}  vs dense {r.get('speedup_vs_dense', 0):.2f}x")
        else:
            print(f"{r['format']:12} {str(r['hparams']):32} T={r['tokens']:<6} {r['backend']:10} {r['pass']:8} {r['status']}")
    for key in ("bsr_vs_torch_bsr_dense_mm", "semi24_vs_dense_8192"):
        if key in result:
            print(key, json.dumps(result[key], indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
