"""The report's energy section: J/token per format and budget, energy vs dense, accuracy per
joule, and the sweep's power trace; or, where nothing was measured, why not.

Energy fields come from ``mbs_layers.sweep.energy`` (null with ``energy_reason`` where no
counter was read); power traces from the ``<store>.power.jsonl`` files beside the stores.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..sweep.energy import REASONS, power_trace_path
from . import analysis as an
from . import figures

POINT = [*an.SHAPE, *an.SETTING, "tokens"]


def measured(kernel: pd.DataFrame) -> pd.DataFrame:
    """Ok kernel rows with a measured energy per call."""
    rows = an.ok_kernels(kernel)
    if rows.empty or "energy_j_per_call" not in rows:
        return rows.iloc[0:0]
    return rows[pd.to_numeric(rows["energy_j_per_call"], errors="coerce") > 0].reset_index(drop=True)


def not_measured_reasons(kernel: pd.DataFrame) -> list[dict]:
    """Why records carry no energy: ``[{reason, meaning, records}]``, most frequent first."""
    if kernel.empty or "energy_reason" not in kernel:
        return []
    counts = kernel["energy_reason"].dropna().value_counts()
    return [{"reason": r, "meaning": REASONS.get(r, ""), "records": int(n)} for r, n in counts.items()]


def energy_table(kernel: pd.DataFrame) -> pd.DataFrame:
    """Per point and format: the least J/token over the format's settings in each budget tier,
    with energy vs dense (dense J/call at the same point / the format's J/call)."""
    rows = measured(kernel)
    if rows.empty:
        return pd.DataFrame()
    rows = rows.assign(
        tier=an.param_fraction(rows).map(an.budget_tier), energy_j_per_call=pd.to_numeric(rows["energy_j_per_call"])
    )
    dense = rows[rows["format"] == "dense"].groupby(POINT)["energy_j_per_call"].min().rename("dense_j")
    best = (
        rows.sort_values("energy_j_per_call", kind="mergesort")
        .drop_duplicates([*POINT, "format", "tier"])
        .join(dense, on=POINT)
    )
    best["energy_vs_dense"] = best["dense_j"] / best["energy_j_per_call"]
    cols = [
        *an.SETTING,
        *an.SHAPE,
        "tokens",
        "format",
        "tier",
        "backend",
        "energy_j_per_token",
        "energy_vs_dense",
        "energy_avg_power_w",
        "energy_spread",
        "idle_power_w",
    ]
    return best.sort_values([*POINT, "tier", "format"], kind="mergesort")[cols].reset_index(drop=True)


def _cell(best: pd.Series) -> dict:
    vs = best["energy_vs_dense"]
    return {"j": f"{best['energy_j_per_token']:.3g} J", "vs": "" if pd.isna(vs) else f"{vs:.3g}× dense"}


def energy_matrices(table: pd.DataFrame, limit: int) -> tuple[list[dict], int]:
    """``energy_table`` as matrices, one per point (setting, shape, tokens): rows formats,
    columns budget tiers (largest first), cells J/token and energy vs dense; at most ``limit``
    matrices, and how many were left out."""
    matrices = []
    groups = list(table.groupby(POINT, sort=True))
    for key, g in groups[:limit]:
        where = dict(zip(POINT, key))
        tiers = sorted(g["tier"].unique(), reverse=True)
        rows = []
        for fmt, gf in g.groupby("format", sort=True):
            by_tier = gf.set_index("tier")
            rows.append(
                {"format": fmt, "cells": [_cell(by_tier.loc[t]) if t in by_tier.index else None for t in tiers]}
            )
        matrices.append(
            {
                "title": f"{where['device']} · {where['dtype']} · {where['pass']} · "
                f"{where['in_features']}×{where['out_features']} · {where['tokens']} tokens",
                "tiers": [f"≤ {t:.0%}" for t in tiers],
                "rows": rows,
            }
        )
    return matrices, max(0, len(groups) - limit)


def read_power_traces(paths) -> pd.DataFrame:
    """Samples ``t, power_w, device`` (plus ``trace``, the store it belongs to) of every store in
    ``paths`` that has a power trace beside it; torn lines of a killed sweep are skipped."""
    rows = []
    for path in map(Path, paths):
        trace = power_trace_path(path)
        if path.suffix != ".jsonl" or not trace.is_file():
            continue
        for line in trace.read_text().splitlines():
            try:
                sample = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(sample, dict) and {"t", "power_w"} <= set(sample):
                rows.append({**sample, "trace": path.name})
    return pd.DataFrame(rows, columns=["t", "power_w", "device", "trace"])


def energy_section(kernel: pd.DataFrame, joined: pd.DataFrame, paths, colors: dict, html_table, limit: int = 8) -> dict:
    """Context of the energy section (see template ``energy.html.j2``)."""
    table = energy_table(kernel)
    traces = read_power_traces(paths)
    section = {
        "measured": not table.empty,
        "reasons": not_measured_reasons(kernel),
        "table": "",
        "matrices": [],
        "left_out": 0,
        "figures": [],
        "trace": "",
    }
    if not table.empty:
        section["table"] = html_table(table)
        section["matrices"], section["left_out"] = energy_matrices(table, limit)
    with_energy = (
        joined[joined.get("energy_j_per_token", pd.Series(dtype=float)).notna()]
        if not joined.empty and "energy_j_per_token" in joined
        else pd.DataFrame()
    )
    for key, g in with_energy.groupby([*an.ACCURACY_GROUP, *an.SETTING], sort=True) if not with_energy.empty else []:
        title = " · ".join(str(k) for k in key)
        section["figures"].append(
            {
                "title": title,
                "uri": figures.accuracy_vs_latency(
                    g, colors, {}, cost="energy_j_per_token", scale=1e3, label="energy (mJ/token, log)"
                ),
            }
        )
    if not traces.empty:
        section["trace"] = figures.power_trace(traces)
    return section
