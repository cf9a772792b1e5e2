"""Torch references of monarch and blast against the bmm formulation published code uses (CPU or GPU).

    python bench/reference_vs_bmm.py [--n 2048] [--tokens 2048] [--budget 0.25] [--repeats 5]

monarch: the published layout writes both bmm into pre-transposed ``out=`` buffers, so the
butterfly permutation costs one contiguous copy (forward only: ``out=`` has no autograd); the
reference reaches the same one copy without ``out=``. blast: the reference is now three bmm
(x's blocks with V, the mixing batched over the rank, U); the einsum form it replaced is timed
as "before". Prints median forward times and reference speed relative to each (>= 1: the
reference is as fast or faster). Not a test: timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import mbs_layers as mbs
from mbs_layers.formats.blast import blast_mix


def monarch_published(layer, x):
    k, q, p = layer.w1.shape
    s = layer.w2.shape[1]
    tokens = x.shape[0]
    h = torch.empty(tokens, k, q, dtype=x.dtype)
    torch.bmm(x.reshape(tokens, k, p).transpose(0, 1), layer.w1.transpose(1, 2), out=h.transpose(0, 1))
    z = h.reshape(tokens, q, k).transpose(1, 2).contiguous().transpose(0, 1)
    y = torch.empty(tokens, k, s, dtype=x.dtype)
    torch.bmm(z, layer.w2.transpose(1, 2), out=y.transpose(0, 1))
    return y.permute(0, 2, 1).reshape(tokens, k * s)


def blast_einsum_before(layer, x):
    b = layer.hp["nblocks"]
    z = torch.einsum("tjq,jqr->tjr", x.reshape(-1, b, layer.in_features // b), layer.V)
    return torch.einsum("tir,ipr->tip", blast_mix(z, layer.s), layer.U).reshape(-1, layer.out_features)


def median_seconds(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--budget", type=float, default=0.25)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    n = args.n
    x = torch.randn(args.tokens, n)
    with torch.no_grad():
        for name, bmm in (("monarch", monarch_published), ("blast", blast_einsum_before)):
            hp = mbs.FORMATS[name].hparams_for_budget(n, n, int(args.budget * n * n))
            layer = mbs.build(name, n, n, bias=False, backend="torch", **hp)
            torch.testing.assert_close(bmm(layer, x), layer(x), rtol=1e-4, atol=1e-4)
            ref = median_seconds(lambda layer=layer: layer(x), args.repeats)
            alt = median_seconds(lambda bmm=bmm, layer=layer: bmm(layer, x), args.repeats)
            print(
                f"{name} {hp}: reference {ref * 1e3:.1f} ms, {bmm.__name__} {alt * 1e3:.1f} ms, "
                f"reference speed {alt / ref:.2f}x ({torch.get_num_threads()} threads)"
            )


if __name__ == "__main__":
    main()
