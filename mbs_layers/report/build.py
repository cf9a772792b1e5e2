"""``build_report``: result files -> one self-contained HTML page (figures embedded as PNG)."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

import jinja2
import pandas as pd

from ..records.files import expand_paths, load_results
from ..validation import check_float
from . import analysis as an
from . import figures
from .energy import energy_section
from .history import history_section
from .predicted import predicted_table

# Figures per section beyond which the rest are listed, not drawn (keeps the page usable).
MAX_FIGURES = 8
PANELS = 9  # panels per error-vs-params figure (one per source and shape)
KERNEL_TABLE_COLUMNS = [
    "format",
    "hparams",
    "in_features",
    "out_features",
    "tokens",
    "dtype",
    "pass",
    "backend",
    "param_count",
    "median_ms",
    "q10_ms",
    "q90_ms",
    "tflops",
    "gbps",
    "roofline_fraction",
    "speedup_vs_dense",
    "speedup_vs_unstructured",
    "device",
    "status",
]


def hp_text(key: str) -> str:
    """``{"rank": 8, "density": 0.2292}`` (canonical JSON) -> ``rank=8, density=0.229``."""
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in json.loads(key or "{}").items())


def _html_table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, classes="data", na_rep="", border=0, float_format=lambda v: f"{v:.4g}")


def _title(names, key) -> str:
    """Compact caption of a group key: values joined by " · ", in/out as ``in×out``."""
    where = dict(zip(names, key if isinstance(key, tuple) else (key,)))
    parts = []
    for name, value in where.items():
        if name == "in_features":
            parts.append(f"{value}×{where.get('out_features', value)}")
        elif name == "tokens":
            parts.append(f"{value} tokens")
        elif name != "out_features" and value != "-":
            parts.append(str(value))
    return " · ".join(parts)


def _limited(items: list, what: str) -> tuple[list, str]:
    """At most ``MAX_FIGURES`` items, and a note naming how many were left out."""
    if len(items) <= MAX_FIGURES:
        return items, ""
    return items[:MAX_FIGURES], f"{len(items) - MAX_FIGURES} more {what} not drawn (see the tables)."


def speedup_text(speedup: float) -> str:
    """A speed-up with three significant digits: 0.0021 -> "0.0021×", 1.234 -> "1.23×"."""
    return f"{speedup:.3g}×"


def _recommendation_tables(
    rec: pd.DataFrame, table_keys: list[str], row_key: str, row_name: str, unit: str = "bytes"
) -> list[dict]:
    """Recommendations as matrices: one per ``table_keys`` group, rows ``row_key``, columns budgets."""
    tables = []
    for key, g in rec.groupby(table_keys, dropna=False, sort=True):
        budgets = sorted(g["budget"].unique(), reverse=True)
        rows = []
        for row_value, gr in g.groupby(row_key, sort=True):
            cells = []
            for budget in budgets:
                r = gr[gr["budget"] == budget].iloc[0]
                fits = isinstance(r["format"], str)
                detail = []
                if pd.notna(r.get("value")):
                    ci = f" ± {r['ci95']:.2g}" if pd.notna(r.get("ci95")) else ""
                    detail.append(f"{r['metric']} {r['value']:.3g}{ci}")
                if isinstance(r.get("not_separable_from"), list) and r["not_separable_from"]:
                    detail.append("not separable from " + ", ".join(r["not_separable_from"]))
                if pd.notna(r.get("speedup")):
                    detail.append(
                        f"{speedup_text(r['speedup'])} dense ({r['backend']})"
                        + (" · noisy timing" if r.get("noisy") in (True,) else "")
                    )
                if fits:
                    detail.append(f"best of {int(r['candidates'])}")
                cells.append(
                    {
                        "format": r["format"] if fits else "—",
                        "hparams": hp_text(r["hparams"]) if fits else "",
                        "detail": " · ".join(detail),
                        "rule": r["rule"],
                        "warn": r["rule"].startswith("none"),
                        "empty": not fits,
                    }
                )
            rows.append({"label": row_value, "cells": cells})
        tables.append(
            {
                "title": _title(table_keys, key),
                "row_name": row_name,
                "budgets": [f"≤ {b:.0%} of dense {unit}" for b in budgets],
                "rows": rows,
            }
        )
    return tables


def _recommendations(summary, kernel, joined, budgets, axis) -> dict:
    """The headline pick: joined (accuracy and speed) if possible, else per available kind."""
    if not joined.empty:
        rec = an.recommend(joined, [*an.ACCURACY_GROUP, *an.SETTING, "tokens"], budgets, axis)
        return {
            "mode": "joined",
            "tables": _recommendation_tables(rec, [*an.ACCURACY_GROUP, *an.SETTING], "tokens", "tokens", axis),
        }
    tables = []
    if not summary.empty:
        rec = an.recommend(summary, an.ACCURACY_GROUP, budgets, axis)
        rec["row"] = [
            _title(["source", *an.SHAPE], key) for key in zip(rec["source"], rec["in_features"], rec["out_features"])
        ]
        tables += _recommendation_tables(rec, ["experiment", "config_id", "metric"], "row", "source", axis)
    measured = an.one_row_per_point(an.ok_kernels(kernel))
    measured = measured[measured["speedup_vs_dense"].notna()] if not measured.empty else measured
    if not measured.empty:
        rec = an.recommend(measured, [*an.SHAPE, *an.SETTING, "tokens"], budgets, axis)
        tables += _recommendation_tables(rec, [*an.SHAPE, *an.SETTING], "tokens", "tokens", axis)
    mode = "separate" if not summary.empty and not measured.empty else "accuracy" if not summary.empty else "speed"
    return {"mode": mode, "tables": tables}


def _accuracy_section(summary, colors, axis) -> dict:
    """Error-vs-memory figures (x: parameters or bytes), one per (experiment, metric), at most
    ``PANELS`` panels each; duplicate points (the same model as another format's) are not drawn."""
    figs = []
    drawn = an.distinct(summary) if not summary.empty else summary
    for (exp, metric), g in drawn.groupby(["experiment", "metric"], sort=True) if not drawn.empty else []:
        panels = sorted(g.groupby(["source", *an.SHAPE]).groups)
        for start in range(0, len(panels), PANELS):
            chunk = panels[start : start + PANELS]
            part = f" (panels {start + 1}–{start + len(chunk)} of {len(panels)})" if len(panels) > PANELS else ""
            figs.append((f"{exp} — {metric}{part}", g[g.set_index(["source", *an.SHAPE]).index.isin(chunk)]))
    figs, note = _limited(figs, "error-vs-params figures")
    table = summary.assign(hparams=summary["hparams_key"].map(hp_text)) if not summary.empty else summary
    cols = [
        *an.ACCURACY_GROUP,
        "format",
        "hparams",
        "param_count",
        "param_fraction",
        "storage_bytes",
        "storage_fraction",
        "value_mean",
        "value_ci95",
        "value_std",
        "seeds",
        "duplicate_of",
    ]
    cols = [c for c in cols if c in table]
    return {
        "figures": [{"title": t, "uri": figures.error_vs_params(g, colors, axis)} for t, g in figs],
        "note": note,
        "table": _html_table(table[cols]) if not table.empty else "",
    }


def _latency_section(joined, kernel, colors) -> dict:
    if joined.empty:
        return {"figures": [], "note": ""}
    point = [*an.SHAPE, *an.SETTING, "tokens"]
    measured = an.ok_kernels(kernel)
    dense = measured[measured["format"] == "dense"].groupby(point)["median_s"].min().to_dict()
    keys = [*an.ACCURACY_GROUP, *an.SETTING]
    groups, note = _limited(list(joined.groupby(keys, sort=True)), "accuracy-vs-latency figures")
    figs = []
    for key, g in groups:
        where = dict(zip(keys, key))
        dense_latency = {t: dense.get(tuple(where.get(k, t) for k in point)) for t in g["tokens"].unique()}
        figs.append({"title": _title(keys, key), "uri": figures.accuracy_vs_latency(g, colors, dense_latency)})
    return {"figures": figs, "note": note}


def _roofline_section(kernel, colors) -> dict:
    measured = an.ok_kernels(kernel)
    measured = measured[(measured["flops"] > 0) & (measured["min_bytes"] > 0)] if not measured.empty else measured
    if measured.empty:
        return {"figures": [], "note": "", "peaks": ""}
    peaks = an.implied_peaks(measured)
    groups, note = _limited(list(measured.groupby(an.SETTING, sort=True)), "roofline charts")
    figs = []
    for key, g in groups:
        row = peaks[(peaks[an.SETTING] == pd.Series(dict(zip(an.SETTING, key)))).all(axis=1)]
        implied = (row["peak_tflops"].iloc[0], row["peak_tbps"].iloc[0]) if len(row) else (None, None)
        sheet = an.datasheet_peaks(key[0], key[1]) or (None, None)
        figs.append({"title": _title(an.SETTING, key), "uri": figures.roofline(g, colors, implied, sheet)})
    return {"figures": figs, "note": note, "peaks": _html_table(peaks) if not peaks.empty else ""}


def _speedup_section(kernel) -> dict:
    grid = an.speedup_grid(kernel)
    if grid.empty:
        return {"figures": [], "note": ""}
    keys = [*an.SETTING, "tier"]
    groups = sorted(grid.groupby(keys), key=lambda kv: (kv[0][:3], -kv[0][3]))
    groups, note = _limited(groups, "heat-maps")
    figs = [
        {"title": f"{_title(an.SETTING, key[:3])} · params ≤ {key[3]:.0%} of dense", "uri": figures.speedup_heatmaps(g)}
        for key, g in groups
    ]
    noisy = an.noisy_speedups(kernel)
    if noisy:
        note = (
            f"{noisy[0]} of {noisy[1]} speed-ups shown come from noisy timings (spread too large to "
            'trust, see docs/benchmarking.md, "CPU timing"). ' + note
        ).strip()
    return {"figures": figs, "note": note}


def _kernel_tables(kernel) -> dict:
    if kernel.empty:
        return {"records": "", "problems": ""}
    table = kernel.assign(
        hparams=kernel["hparams_key"].map(hp_text),
        **{f"{q}_ms": pd.to_numeric(kernel[f"{q}_s"], errors="coerce") * 1e3 for q in ("median", "q10", "q90")},
    )
    sort = ["device", "dtype", "pass", "in_features", "out_features", "tokens", "format"]
    table = table.sort_values(sort, kind="mergesort")[KERNEL_TABLE_COLUMNS]
    bad = kernel[kernel["status"] != "ok"]
    problems = (
        bad.groupby(["format", "status"]).size().rename("records").reset_index() if not bad.empty else pd.DataFrame()
    )
    return {"records": _html_table(table), "problems": _html_table(problems) if not bad.empty else ""}


def _predicted(kernel) -> str:
    table = predicted_table(kernel)
    if table.empty:
        return ""
    return _html_table(table.assign(hparams=table.pop("hparams_key").map(hp_text)))


def _inputs(df, paths) -> list[dict]:
    counts = df.groupby(["source_file", "kind"]).size() if not df.empty else pd.Series(dtype=int)
    return [
        {
            "path": str(p),
            "kernel": int(counts.get((str(p), "kernel"), 0)),
            "accuracy": int(counts.get((str(p), "accuracy"), 0)),
        }
        for p in paths
    ]


def build_report(
    paths, out_html, *, budgets=an.DEFAULT_BUDGETS, title: str = "mbs report", history=None, axis: str = "bytes"
) -> Path:
    """Write one self-contained HTML report of the result files ``paths``; returns its path.

    Works with kernel-only, accuracy-only or both kinds of input; sections without data say so.
    ``history``: a history database (``mbs history add``) whose trend plots join the page.
    ``axis``: budgets and the accuracy figures' x axis in storage "bytes" (default) or "params".
    """
    from ..validation import check_choice

    budgets = tuple(check_float("budgets", b, low=0.0, high=1.0, low_open=True) for b in budgets)
    check_choice("axis", axis, an.AXES)
    paths = expand_paths(paths)
    out_html = Path(out_html)
    df = load_results(paths)
    kernel, accuracy = an.split_kinds(df)
    summary = an.accuracy_summary(accuracy)
    joined = an.join_accuracy_kernel(summary, kernel)
    colors = figures.format_colors(list(kernel.get("format", [])) + list(accuracy.get("format", [])))
    devices = an.gpu_state(kernel) if not kernel.empty else pd.DataFrame()
    shapes = lambda d: sorted({f"{i}×{o}" for i, o in zip(d["in_features"], d["out_features"])})
    context = {
        "title": title,
        "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "inputs": _inputs(df, paths),
        "n_kernel": len(kernel),
        "n_accuracy": len(accuracy),
        "n_joined": len(joined),
        "kernel_shapes": shapes(kernel) if not kernel.empty else [],
        "accuracy_shapes": shapes(accuracy) if not accuracy.empty else [],
        "cpu_devices": [d for d in devices.get("device", []) if not an.is_gpu_device(d)],
        "budgets": budgets,
        "axis": axis,
        "recommendation": _recommendations(summary, kernel, joined, budgets, axis),
        "accuracy": _accuracy_section(summary, colors, axis),
        "latency": _latency_section(joined, kernel, colors),
        "roofline": _roofline_section(kernel, colors),
        "speedup": _speedup_section(kernel),
        "energy": energy_section(kernel, joined, paths, colors, _html_table),
        "gpu_state": _html_table(devices) if not devices.empty else "",
        "kernel_tables": _kernel_tables(kernel),
        "history": history_section(history) if history else None,
        "predicted": _predicted(kernel),
    }
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent), autoescape=True, trim_blocks=True, lstrip_blocks=True
    )
    out_html.parent.mkdir(parents=True, exist_ok=True)
    out_html.write_text(env.get_template("template.html.j2").render(**context), encoding="utf-8")
    return out_html
