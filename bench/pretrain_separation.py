"""Can a pre-training preset rank formats? Dense vs low-rank at 10% with 95% intervals.

    OMP_NUM_THREADS=1 python bench/pretrain_separation.py --preset default --seeds 0 1 2 \
        --out out/bench-separation.jsonl

Runs the preset's ViT for dense (100%) and low-rank at ``--budget`` over ``--seeds`` (resumable:
the store keeps finished points), then prints each format's test accuracy (mean ± 95%
t-interval half-width), the gap, and the smallest gap the preset resolves with these seeds:
t_{0.975, n-1} · (s_a + s_b) / √n, where the two intervals just touch. Exit status 0 when the
intervals do not overlap, 1 when they do (not separable). A benchmark, not a test: minutes to
hours on a CPU (see docs/accuracy.md, "Presets").
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
from scipy.stats import t

from mbs_layers.accuracy.intervals import separable, t_interval
from mbs_layers.accuracy.pretrain import run_pretrain
from mbs_layers.records import RecordStore


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default", help="pretrain preset (default: default)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (default: the preset's)")
    parser.add_argument("--budget", type=float, default=0.1, help="low-rank budget (default 0.1)")
    parser.add_argument("--data", default=None, help="data set instead of the preset's")
    parser.add_argument("--out", default="out/bench-separation.jsonl", help="record store (resumed)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    store = run_pretrain(
        args.out,
        preset=args.preset,
        data=args.data,
        seeds=args.seeds,
        budgets=(args.budget,),
        formats=("dense", "lowrank"),
    )
    results = {}
    for r in RecordStore(store):
        if r["metric"] == "test_accuracy" and r["status"] == "ok" and r["config"]["preset"] == args.preset:
            results.setdefault(r["format"], {})[r["seed"]] = r["value"]
    summary = {}
    for fmt, by_seed in sorted(results.items()):
        values = list(by_seed.values())
        mean, half = t_interval(values)
        sd = statistics.stdev(values) if len(values) > 1 else float("nan")
        summary[fmt] = {"mean": mean, "ci95": half, "sd": sd, "seeds": len(values), "values": values}
        print(f"{fmt:8s} test accuracy {mean:.4f} ± {half:.4f} (95% t, n={len(values)}, sd {sd:.4f})")
    dense, low = summary["dense"], summary["lowrank"]
    ok = separable(dense["mean"], dense["ci95"], low["mean"], low["ci95"])
    n = min(dense["seeds"], low["seeds"])
    resolvable = t.ppf(0.975, n - 1) * (dense["sd"] + low["sd"]) / n**0.5 if n > 1 else float("nan")
    print(
        f"gap {dense['mean'] - low['mean']:+.4f}; smallest resolvable gap with n={n}: {resolvable:.4f}; "
        f"{'separable' if ok else 'NOT separable'}; {time.perf_counter() - start:.0f} s this run"
    )
    print(json.dumps({"preset": args.preset, "summary": summary, "separable": ok, "resolvable_gap": resolvable}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
