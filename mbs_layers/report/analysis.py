"""The numbers behind the report: Pareto fronts, the accuracy/kernel join, rooflines, picks.

All functions take the tidy DataFrame of :func:`mbs_layers.records.files.load_results` (or a
part of it) and return DataFrames or plain dicts; plotting and HTML live elsewhere.
"""

from __future__ import annotations

import math

import pandas as pd

from .. import datasheet
from ..records import ACCURACY_KEYS, KERNEL_KEYS

# "Which format at this budget": budgets as fractions of the dense parameter count.
DEFAULT_BUDGETS = (0.5, 0.25, 0.1, 0.05)
# Tiers a record's parameter fraction is snapped up to (heat-maps group by tier).
BUDGET_TIERS = (0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
SHAPE = ["in_features", "out_features"]
SETTING = ["device", "dtype", "pass"]
# config_id: points of different configurations (presets, settings) are never pooled
ACCURACY_GROUP = ["experiment", "config_id", "source", "metric", *SHAPE]
# Budget axes: "bytes" (storage, indices and metadata included) or "params"; the
# recommendation uses bytes, so formats that store indices pay for them.
AXES = ("bytes", "params")

_GPU_WORDS = (
    "nvidia",
    "tesla",
    "geforce",
    "quadro",
    "rtx",
    "a100",
    "h100",
    "h200",
    "l40",
    "cuda",
    "radeon",
    "instinct",
)


def is_gpu_device(name) -> bool:
    """Whether a record's ``device`` names a GPU (anything else is labelled CPU)."""
    return isinstance(name, str) and any(w in name.lower() for w in _GPU_WORDS)


def higher_is_better(metric: str) -> bool:
    """Accuracy-like metrics (name contains ``acc``) grow; errors, losses, perplexity shrink."""
    return "acc" in str(metric).lower()


def split_kinds(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(kernel rows, accuracy rows), each with fresh index and at least its schema's columns."""

    def part(kind, keys):
        rows = df[df["kind"] == kind].reset_index(drop=True)
        return rows.reindex(columns=list(dict.fromkeys([*rows.columns, *keys])))

    kernel, accuracy = part("kernel", KERNEL_KEYS), part("accuracy", ACCURACY_KEYS)
    # columns that only one kind has are NaN-padded (float) in the union; restore ints
    if not kernel.empty and kernel["tokens"].notna().all():
        kernel = kernel.assign(tokens=kernel["tokens"].astype("int64"))
    return kernel, with_group_columns(accuracy)


def with_group_columns(accuracy: pd.DataFrame) -> pd.DataFrame:
    """``accuracy`` with ``source`` and ``config_id`` filled ("-") where records have none
    (experiments without sources; stores written before configurations were keyed)."""
    for column in ("source", "config_id"):
        if column not in accuracy:
            accuracy = accuracy.assign(**{column: "-"})
        accuracy = accuracy.assign(**{column: accuracy[column].fillna("-")})
    return accuracy


def ok_kernels(kernel: pd.DataFrame) -> pd.DataFrame:
    """Kernel rows that were measured (status ``ok`` with a positive median)."""
    if kernel.empty:
        return kernel
    ok = kernel[(kernel["status"] == "ok") & (pd.to_numeric(kernel["median_s"], errors="coerce") > 0)]
    return ok.reset_index(drop=True)


KERNEL_POINT = ["format", "hparams_key", *SHAPE, *SETTING, "tokens", "backend"]


def one_row_per_point(measured: pd.DataFrame) -> pd.DataFrame:
    """Repeated runs of a kernel point collapsed to one row: the median of their ``median_s``
    and speed-ups (not the best run, which would favour whichever point ran most often),
    ``runs`` their count and ``noisy`` true if any run was."""
    if measured.empty:
        return measured.assign(runs=pd.Series(dtype=int))
    numeric = [c for c in ("median_s", "speedup_vs_dense", "speedup_vs_unstructured") if c in measured]
    measured = measured.assign(
        **{c: pd.to_numeric(measured[c], errors="coerce") for c in numeric},
        noisy=measured["noisy"].fillna(False).astype(bool) if "noisy" in measured else False,
    )
    grouped = measured.groupby(KERNEL_POINT, dropna=False, sort=False)
    first = grouped.first().drop(columns=numeric + ["noisy"])
    return (
        first.join(grouped[numeric].median())
        .join(grouped["noisy"].any())
        .join(grouped.size().rename("runs"))
        .reset_index()
    )


def param_fraction(df: pd.DataFrame) -> pd.Series:
    """Parameters as a fraction of dense: the records' own ``param_fraction`` where they carry
    one (whole-model experiments count every replaced layer against its dense model, while
    in/out name one layer), else against the dense layer of the same shape."""
    per_layer = df["param_count"] / (df["in_features"] * df["out_features"])
    if "param_fraction" in df:
        return pd.to_numeric(df["param_fraction"], errors="coerce").fillna(per_layer)
    return per_layer


def _itemsize(dtype) -> float:
    import torch

    found = getattr(torch, str(dtype).removeprefix("torch."), None)
    return found.itemsize if isinstance(found, torch.dtype) else math.nan


def storage_fraction(df: pd.DataFrame) -> pd.Series:
    """Storage as a fraction of the dense layers' bytes in the same dtype: the records' own
    ``storage_fraction``, else ``storage_bytes`` over in·out·itemsize(dtype) (kernel records),
    else (records without storage) the parameter fraction."""
    fraction = pd.to_numeric(df.get("storage_fraction", pd.Series(math.nan, index=df.index)), errors="coerce")
    if "storage_bytes" in df and "dtype" in df:
        dense_bytes = df["in_features"] * df["out_features"] * df["dtype"].map(_itemsize)
        fraction = fraction.fillna(pd.to_numeric(df["storage_bytes"], errors="coerce") / dense_bytes)
    return fraction.fillna(param_fraction(df))


def budget_fraction(df: pd.DataFrame, axis: str = "bytes") -> pd.Series:
    """The fraction of dense that budgets are compared with on ``axis`` ("bytes" or "params")."""
    from ..validation import check_choice

    check_choice("axis", axis, AXES)
    return storage_fraction(df) if axis == "bytes" else param_fraction(df)


def budget_tier(fraction: float) -> float:
    """The smallest tier in ``BUDGET_TIERS`` at or above ``fraction`` (e.g. 0.24 -> 0.25)."""
    return next((t for t in BUDGET_TIERS if fraction <= t * (1 + 1e-9)), BUDGET_TIERS[-1])


def pareto_front(df: pd.DataFrame, x: str, y: str, *, maximize_y: bool = False) -> pd.DataFrame:
    """Rows not dominated by another row with smaller-or-equal ``x`` and a better ``y``.

    Sorted by ``x``; ``y`` is minimised unless ``maximize_y``.
    """
    if df.empty:
        return df
    sign = -1.0 if maximize_y else 1.0
    ordered = df.assign(_y=sign * df[y]).sort_values([x, "_y"], kind="mergesort")
    keep, best = [], math.inf
    for idx, value in zip(ordered.index, ordered["_y"]):
        if value < best:
            keep.append(idx)
            best = value
    return ordered.loc[keep].drop(columns="_y")


def complete_writes(accuracy: pd.DataFrame) -> pd.DataFrame:
    """Rows of complete point writes: a write torn by a kill (fewer rows than its
    ``write_size``) does not count (rows without write fields are kept)."""
    if "write" not in accuracy or accuracy.empty:
        return accuracy
    counts = accuracy.groupby("write")["write"].transform("size")
    return accuracy[accuracy["write"].isna() | (counts == accuracy["write_size"])]


def accuracy_summary(accuracy: pd.DataFrame) -> pd.DataFrame:
    """Mean, 95% t-interval half-width (``value_ci95``, NaN for one seed), spread and seed count
    of each accuracy point over its seeds, with its storage and duplicate marks.

    Only results count: records with a non-ok ``status`` or no value are left out, and so are
    per-epoch curve records (an ``epoch`` field) and torn writes.
    """
    from ..accuracy.intervals import t_interval

    accuracy = complete_writes(with_group_columns(accuracy))
    keep = accuracy["value"].notna()
    if "status" in accuracy:
        keep &= accuracy["status"].isna() | (accuracy["status"] == "ok")
    if "epoch" in accuracy:
        keep &= accuracy["epoch"].isna()
    accuracy = accuracy[keep]
    if accuracy.empty:
        return pd.DataFrame()
    keys = [*ACCURACY_GROUP, "format", "hparams_key", "param_count"]
    grouped = accuracy.groupby(keys, dropna=False)
    out = grouped["value"].agg(value_mean="mean", value_std="std", seeds="count").reset_index()
    out["value_std"] = out["value_std"].fillna(0.0)
    out["value_ci95"] = grouped["value"].agg(lambda v: t_interval(v)[1]).values
    out["hparams"] = grouped["hparams"].first().values
    for column in ("param_fraction", "storage_bytes", "storage_fraction", "model_signature"):
        if column in accuracy:
            out[column] = grouped[column].first().values
    return mark_duplicates(out)


def mark_duplicates(summary: pd.DataFrame) -> pd.DataFrame:
    """``duplicate_of``: for points that are the same model as another format's point in the
    same group (equal ``model_signature`` and parameter count, e.g. BTT rank 1 and Monarch √n
    blocks), the format kept (first by name); None for the point that is kept."""
    summary = summary.assign(duplicate_of=None)
    if "model_signature" not in summary:
        return summary
    same = summary[summary["model_signature"].notna()]
    for _, g in same.groupby([*ACCURACY_GROUP, "model_signature", "param_count"], dropna=False):
        kept = g.sort_values("format", kind="mergesort").iloc[0]["format"]
        summary.loc[g.index[g["format"] != kept], "duplicate_of"] = kept
    return summary


def distinct(summary: pd.DataFrame) -> pd.DataFrame:
    """The points that are not duplicates of another format's point (each model counted once)."""
    return summary[summary["duplicate_of"].isna()] if "duplicate_of" in summary else summary


def join_accuracy_kernel(acc_summary: pd.DataFrame, kernel: pd.DataFrame) -> pd.DataFrame:
    """Accuracy points joined with their measured kernels on format + hparams + in/out.

    Each kernel point (setting, tokens) keeps its fastest backend: formats at their best (and
    that backend's energy, where measured).
    """
    measured = one_row_per_point(ok_kernels(kernel))
    if acc_summary.empty or measured.empty:
        return pd.DataFrame()
    point = ["format", "hparams_key", *SHAPE, *SETTING, "tokens"]
    fastest = measured.sort_values("median_s", kind="mergesort").drop_duplicates(point)
    cols = [
        *point,
        "backend",
        "median_s",
        "speedup_vs_dense",
        "noisy",
        *[c for c in ("energy_j_per_call", "energy_j_per_token") if c in fastest],
    ]
    return acc_summary.merge(fastest[cols], on=["format", "hparams_key", *SHAPE], how="inner")


def _choose(candidates: pd.DataFrame, *, accuracy: bool, speed: bool, maximize: bool):
    """The recommended row of ``candidates`` and the rule that picked it (see docs/reports.md)."""
    if accuracy and speed:
        fast = candidates[candidates["speedup_vs_dense"] >= 1.0]
        pool, rule = (
            (fast, "lowest error among formats at least as fast as dense")
            if not fast.empty
            else (candidates, "none as fast as dense: lowest error")
        )
    else:
        pool, rule = candidates, ("lowest error" if accuracy else "fastest")
    if accuracy:
        order = ["value_mean", "median_s"] if speed else ["value_mean"]
        asc = [not maximize, True][: len(order)]
    else:
        order, asc = ["speedup_vs_dense"], [False]
    return pool.sort_values(order, ascending=asc, kind="mergesort").iloc[0], rule, pool


def not_separable_from(best, pool: pd.DataFrame) -> list[str]:
    """Formats of ``pool`` whose 95% interval overlaps ``best``'s (:mod:`mbs_layers.accuracy.intervals`):
    the data cannot rank them against it. With one seed every other format is listed."""
    from ..accuracy.intervals import separable

    if "value_ci95" not in pool:
        return []
    others = pool[pool["format"] != best["format"]]
    return sorted(
        {
            fmt
            for fmt, mean, half in zip(others["format"], others["value_mean"], others["value_ci95"])
            if not separable(best["value_mean"], best["value_ci95"], mean, half)
        }
    )


def recommend(df: pd.DataFrame, group: list[str], budgets=DEFAULT_BUDGETS, axis: str = "bytes") -> pd.DataFrame:
    """Per group and budget, the recommended format among those within the budget on ``axis``
    ("bytes": storage incl. indices and metadata, the default; or "params").

    ``df`` is the accuracy/kernel join, an accuracy summary (accuracy only) or measured
    kernel rows (speed only); the rule used is recorded in column ``rule``. With accuracy,
    ``not_separable_from`` lists the formats whose interval overlaps the pick's: then the
    pick is not a ranking (the rule says so). Duplicate points are counted once.
    """
    accuracy, speed = "value_mean" in df, "speedup_vs_dense" in df
    df = distinct(df)
    rows = []
    for key, g in df.groupby(group, dropna=False, sort=True):
        maximize = accuracy and higher_is_better(g["metric"].iloc[0])
        fraction = budget_fraction(g, axis)
        for budget in budgets:
            within = g[fraction <= budget * (1 + 1e-9)]
            row = dict(
                zip(group, key), budget=budget, format=None, rule="no format fits the budget", candidates=len(within)
            )
            if not within.empty:
                best, rule, pool = _choose(within, accuracy=accuracy, speed=speed, maximize=maximize)
                single = accuracy and "value_ci95" in pool and pd.isna(best["value_ci95"])
                ties = not_separable_from(best, pool) if accuracy and not single else []
                if single:
                    rule += "; one seed, no interval: not a ranking"
                elif ties:
                    rule += "; not separable from " + ", ".join(ties) + " (95% intervals overlap)"
                row.update(
                    format=best["format"],
                    hparams=best["hparams_key"],
                    backend=best.get("backend"),
                    param_count=int(best["param_count"]),
                    rule=rule,
                    value=best.get("value_mean"),
                    ci95=best.get("value_ci95"),
                    speedup=best.get("speedup_vs_dense"),
                    not_separable_from=ties,
                    noisy=best.get("noisy") in (True,),
                )
            rows.append(row)
    return pd.DataFrame(rows)


def implied_peaks(kernel: pd.DataFrame) -> pd.DataFrame:
    """The roofline each (device, dtype, pass) was scored against, recovered from its records.

    A record's bound is ``achieved / roofline_fraction = min(P, AI * B)``, so the compute
    peak ``P`` is the largest bound and the bandwidth ``B`` the largest ``bound / AI`` (exact
    once a setting has points in both regimes, a lower bound otherwise).
    """
    ok = ok_kernels(kernel)
    cols = [*SETTING, "peak_tflops", "peak_tbps"]
    if ok.empty:
        return pd.DataFrame(columns=cols)
    achieved = ok["flops"] / ok["median_s"]
    fraction = pd.to_numeric(ok["roofline_fraction"], errors="coerce")
    ok = ok.assign(bound=achieved / fraction, ai=ok["flops"] / ok["min_bytes"])
    ok = ok[(fraction > 0) & (ok["ai"] > 0)]
    if ok.empty:
        return pd.DataFrame(columns=cols)
    grouped = ok.assign(bw=ok["bound"] / ok["ai"]).groupby(SETTING)
    return pd.DataFrame(
        {"peak_tflops": grouped["bound"].max() / 1e12, "peak_tbps": grouped["bw"].max() / 1e12}
    ).reset_index()


def datasheet_peaks(device, dtype: str):
    """(TFLOP/s, TB/s) from the datasheet (:mod:`mbs_layers.datasheet`) for a known GPU name
    and dtype, else ``None``."""
    sheet = datasheet.datasheet_peaks(str(device))
    dtype = str(dtype).removeprefix("torch.")
    if sheet is None or dtype not in sheet["flops"]:
        return None
    return sheet["flops"][dtype] / 1e12, sheet["bandwidth"] / 1e12


def noisy_speedups(kernel: pd.DataFrame) -> tuple[int, int] | None:
    """(noisy, all) counts of the measured points with a speed-up vs dense; None if none is noisy."""
    ok = one_row_per_point(ok_kernels(kernel))
    if ok.empty or "noisy" not in ok:
        return None
    with_speedup = ok[ok["speedup_vs_dense"].notna() & (ok["format"] != "dense")]
    noisy = int(with_speedup["noisy"].sum())
    return (noisy, len(with_speedup)) if noisy else None


def speedup_grid(kernel: pd.DataFrame) -> pd.DataFrame:
    """Speedup vs dense per (setting, format, budget tier, tokens, width), best over hparams.

    Width is ``in_features`` for square layers and ``"in×out"`` otherwise.
    """
    ok = one_row_per_point(ok_kernels(kernel))
    ok = ok[(ok["format"] != "dense") & ok["speedup_vs_dense"].notna()] if not ok.empty else ok
    if ok.empty:
        return pd.DataFrame()
    ok = ok.assign(
        tier=[budget_tier(f) for f in param_fraction(ok)],
        width=[str(i) if i == o else f"{i}×{o}" for i, o in zip(ok["in_features"], ok["out_features"])],
        width_order=ok["in_features"] * ok["out_features"],
    )
    keys = [*SETTING, "tier", "format", "tokens", "width", "width_order"]
    return ok.groupby(keys)["speedup_vs_dense"].max().reset_index()


def _flatten(prefix: str, value, out: dict) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}{k}.", v, out)
    else:
        out[prefix[:-1]] = value


def is_throttled(nvml) -> bool:
    """A record taken while throttled: ``nvml["throttled"]``, or any non-empty ``*reason*`` field."""
    if not isinstance(nvml, dict):
        return False
    if "throttled" in nvml:
        return bool(nvml["throttled"])
    flat: dict = {}
    _flatten("", nvml, flat)
    return any("reason" in k.lower() and v not in (None, 0, "", [], "none", "None") for k, v in flat.items())


def gpu_state(kernel: pd.DataFrame) -> pd.DataFrame:
    """Per device: record count, throttled count and median/min/max of each numeric NVML field."""
    rows = []
    for device, g in kernel.groupby("device", dropna=False):
        states = [n for n in g["nvml"] if isinstance(n, dict) and any(v is not None for v in n.values())]
        row = {
            "device": device,
            "kind": "GPU" if is_gpu_device(device) or states else "CPU",
            "records": len(g),
            "with_nvml": len(states),
            "throttled": sum(is_throttled(n) for n in states),
        }
        flat = []
        for n in states:
            f: dict = {}
            _flatten("", n, f)
            flat.append({k: v for k, v in f.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        if flat:
            stats = pd.DataFrame(flat).agg(["median", "min", "max"])
            for field in stats.columns:
                row[field] = "{:.4g} ({:.4g}–{:.4g})".format(*stats[field])
        rows.append(row)
    return pd.DataFrame(rows)
