"""Our Triton BSR forward vs PyTorch's Triton ``bsr_dense_mm`` on the same weights (GPU only).

    python bench/bsr_vs_torch.py --out bench/results/<gpu>/bsr_vs_torch.json

Decides which BSR kernel the ``blocksparse`` "triton" backend should keep (issue 3). Times
come from the sweep's device timer (CUDA events, L2 flushed between repeats). The rest of
the sparse comparison is the sweep presets ``kernels`` (4096², every backend vs reference vs
dense) and ``sparse24`` (2:4 vs dense at 8192³).
"""

from __future__ import annotations

import argparse
import json
from functools import partial

import torch

import mbs_layers as mbs
from mbs_layers.sweep.timer import make_timer, summarize


def compare(size: int, tokens_list: list[int], dtype: torch.dtype) -> list[dict]:
    from torch.sparse._triton_ops import bsr_dense_mm

    device = torch.device("cuda")
    timer = make_timer(device, warmup=10, repeats=50)
    rows = []
    for block, density in ((64, 0.5), (64, 0.1), (32, 0.1)):
        layer = mbs.build(
            "blocksparse",
            size,
            size,
            block=block,
            density=density,
            dtype=dtype,
            device=device,
            backend="triton",
            bias=False,
        )
        bsr = layer.dense_weight().detach().to_sparse_bsr((block, block))
        for tokens in tokens_list:
            x = torch.randn(tokens, size, dtype=dtype, device=device)
            with torch.no_grad():
                torch.testing.assert_close(layer(x), bsr_dense_mm(bsr, x.T).T, rtol=2e-2, atol=2e-2)
                ours = summarize(timer.measure(partial(layer, x)))["median_s"]
                theirs = summarize(timer.measure(partial(bsr_dense_mm, bsr, x.T)))["median_s"]
            rows.append(
                {
                    "block": block,
                    "density": density,
                    "tokens": tokens,
                    "ours_s": ours,
                    "torch_bsr_dense_mm_s": theirs,
                    "ours_speedup": theirs / ours,
                }
            )
            print(
                f"block {block:3} density {density:4} T={tokens:<6} ours {ours * 1e3:8.3f} ms  "
                f"torch {theirs * 1e3:8.3f} ms  ours {theirs / ours:5.2f}x"
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--tokens", type=int, nargs="+", default=[256, 4096, 16384])
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16"])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rows = compare(args.size, args.tokens, getattr(torch, args.dtype))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
