"""Plain-text and CSV summaries of accuracy records: mean and 95% t-interval over seeds."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .intervals import t_interval


def ok_frame(records: list[dict]) -> pd.DataFrame:
    """The records with status ``ok`` as a DataFrame; ``hparams`` as a compact string."""
    frame = pd.DataFrame([r for r in records if r.get("status") == "ok"])
    if not frame.empty:
        frame["hparams"] = frame["hparams"].map(lambda hp: ",".join(f"{k}={v}" for k, v in sorted(hp.items())) or "-")
    return frame


def half_width(values: pd.Series) -> float:
    """Half-width of the 95% t-interval of the non-missing ``values`` (NaN below two)."""
    values = values.dropna()
    return t_interval(values)[1] if len(values) else float("nan")


def summary(records: list[dict], by: list[str], values: list[str], order: list[str] | None = None) -> pd.DataFrame:
    """Mean of ``values`` per group ``by`` over seeds, ``<value>_ci95`` (half-width of the 95%
    t-interval, :mod:`.intervals`) and the seed count. Rows are sorted by ``order`` (default ``by``).
    """
    frame = ok_frame(records)
    if frame.empty:
        return frame
    by = [c for c in by if c in frame]  # e.g. storage_fraction is absent from older stores
    frame[values] = frame[values].apply(pd.to_numeric, errors="coerce")
    grouped = frame.groupby(by, sort=True, dropna=False)
    table = grouped[values].mean()
    for col in values:
        table[f"{col}_ci95"] = grouped[col].agg(half_width)
    table["seeds"] = grouped["seed"].nunique()
    return table.reset_index().sort_values([c for c in (order or by) if c in by], kind="stable")


def metric_table(records: list[dict], by: list[str], metrics: list[str]) -> str:
    """One row per group ``by``, one mean (and 95% interval) column per metric in ``metrics``, as text."""
    table = pd.DataFrame()
    for metric in metrics:
        part = summary([r for r in records if r.get("metric") == metric], by, ["value"])
        if part.empty:
            continue
        part = part.rename(columns={"value": metric, "value_ci95": f"{metric}_ci95"})
        on = [c for c in by if c in part and c in table] if not table.empty else by
        table = part if table.empty else table.merge(part.drop(columns="seeds"), on=on, how="outer")
    if not table.empty:
        table = table[[c for c in table.columns if c != "seeds"] + ["seeds"]]
    return render(table, records)


def skipped_lines(records: list[dict]) -> list[str]:
    """Per format, how many points were skipped or failed, with the first reason."""
    first: dict[str, str] = {}
    counts: dict[str, int] = {}
    for r in records:
        if r.get("status", "ok") != "ok":
            first.setdefault(r["format"], r["status"])
            counts[r["format"]] = counts.get(r["format"], 0) + 1
    return [f"{fmt}: {counts[fmt]} point(s), e.g. {first[fmt]}" for fmt in sorted(first)]


def render(table: pd.DataFrame, records: list[dict]) -> str:
    """``table`` as aligned text, followed by the skipped / failed points."""
    if not table.empty and (table["seeds"] <= 1).all():  # one seed: no interval to show
        table = table.drop(columns=[c for c in table.columns if c.endswith("_ci95")])
    text = "(no successful points)" if table.empty else table.to_string(index=False, float_format=lambda v: f"{v:.4g}")
    lines = skipped_lines(records)
    return text + ("\n\nnot run:\n  " + "\n  ".join(lines) if lines else "")


def write_csv(records: list[dict], path: str | Path) -> Path:
    """Every record as one CSV row (dict-valued fields JSON-encoded)."""
    path = Path(path)
    rows = [{k: json.dumps(v, sort_keys=True) if isinstance(v, dict) else v for k, v in r.items()} for r in records]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path
