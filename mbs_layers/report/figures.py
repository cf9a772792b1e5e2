"""Matplotlib figures of the report, each returned as a ``data:image/png;base64`` URI.

Embedding PNGs keeps the HTML page self-contained (no external files or scripts).
"""

from __future__ import annotations

import base64
import io
import math
import zlib

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .analysis import SHAPE, higher_is_better, param_fraction, pareto_front, storage_fraction

DPI = 100


def to_data_uri(fig) -> str:
    """The figure as an embedded PNG; the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# A fixed slot of matplotlib's tab20 palette per format name, so a format keeps its colour in
# every report whatever other formats are present. Names not listed (a newly added format)
# hash into the slots left over, which is stable too; list a new format here to choose its slot.
COLOR_SLOTS = {
    "dense": 14,
    "unstructured": 15,
    "semi24": 6,
    "blocksparse": 7,
    "blockdiag": 2,
    "lowrank": 0,
    "lowrank_light": 1,
    "monarch": 4,
    "btt": 5,
    "blast": 8,
    "kronecker": 10,
    "tt": 11,
    "sltrain": 9,
}
_SPARE_SLOTS = sorted(set(range(20)) - set(COLOR_SLOTS.values()))


def format_color(name: str) -> tuple:
    """The colour of format ``name``: its listed slot, or a stable hash of the name into the spare ones."""
    slot = COLOR_SLOTS.get(name)
    if slot is None:
        slot = _SPARE_SLOTS[zlib.crc32(name.encode()) % len(_SPARE_SLOTS)]
    return plt.get_cmap("tab20")(slot)


def format_colors(formats) -> dict:
    """A fixed colour per format name, the same in every figure and every report."""
    return {name: format_color(name) for name in set(formats)}


def _panels(count: int, width: float = 5.0, height: float = 3.8):
    """A grid of ``count`` axes, three per row, laid out so titles and labels never overlap."""
    cols = min(count, 3)
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, layout="constrained")
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:count])


def _si(value: float) -> str:
    """Compact tick label: 50000 -> 50k, 2e6 -> 2M, 0.005 -> 0.005."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def _log_axis(axis, values) -> None:
    """Log scale in plain numbers, labelled at 1, 2 and 5 × powers of ten (1 × only when
    ``values`` span more than two and a half decades, so labels never collide)."""
    values = np.asarray(values, dtype=float)
    values = values[values > 0]
    wide = values.size and math.log10(values.max() / values.min()) > 2.5
    axis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0,) if wide else (1.0, 2.0, 5.0)))
    axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: _si(v)))
    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def _figure_legend(fig, axes) -> None:
    """One legend for all panels, right of them (panels differ in which formats they show)."""
    entries = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    fig.legend(entries.values(), entries.keys(), loc="outside right upper", fontsize=8)


def _front_line(ax, front: pd.DataFrame, x: str, y: str, label="Pareto front (all formats)"):
    ax.step(front[x], front[y], where="post", color="black", ls="--", lw=1.2, label=label, zorder=1)


def error_vs_params(summary: pd.DataFrame, colors: dict, axis: str = "params") -> str:
    """One panel per (source, shape): each format's points (error bars: 95% t-interval over
    seeds) and front, plus the overall front; x is parameters or storage bytes (``axis``)."""
    metric = summary["metric"].iloc[0]
    maximize = higher_is_better(metric)
    with_bytes = axis == "bytes" and "storage_bytes" in summary and summary["storage_bytes"].notna().all()
    x, fraction, unit = (
        ("storage_bytes", storage_fraction, "storage bytes")
        if with_bytes  # else: older records
        else ("param_count", param_fraction, "parameters")
    )
    groups = list(summary.groupby(["source", *SHAPE], sort=True))
    fig, axes = _panels(len(groups))
    for ax, ((source, n_in, n_out), g) in zip(axes, groups):
        for fmt, gf in g.groupby("format"):
            front = pareto_front(gf, x, "value_mean", maximize_y=maximize)
            ax.errorbar(
                gf[x],
                gf["value_mean"],
                yerr=gf["value_ci95"].fillna(0.0),
                fmt="o",
                ms=4,
                color=colors[fmt],
                alpha=0.45,
                lw=1,
            )
            ax.plot(front[x], front["value_mean"], "-o", ms=4, color=colors[fmt], label=fmt)
        _front_line(ax, pareto_front(g, x, "value_mean", maximize_y=maximize), x, "value_mean")
        dense = float((g[x] / fraction(g)).median())
        ax.axvline(dense, color="grey", lw=0.8, ls=":")
        ax.set_xscale("log")
        _log_axis(ax.xaxis, [*g[x], dense])
        # long source names (model/layer paths) break after their first "/"
        ax.set_title(f"{source} {n_in}×{n_out}".replace("/", "/\n", 1 if len(source) > 32 else 0), fontsize=9)
        ax.set(
            xlabel=f"{unit} (dotted: dense; bars: 95% interval)",
            ylabel=f"{metric} ({'higher' if maximize else 'lower'} is better)",
        )
        ax.grid(alpha=0.3)
    _figure_legend(fig, axes)
    return to_data_uri(fig)


def accuracy_vs_latency(
    joined: pd.DataFrame,
    colors: dict,
    dense_latency: dict,
    *,
    cost: str = "median_s",
    scale: float = 1e3,
    label: str = "latency (ms, log)",
) -> str:
    """Metric vs a per-call cost (latency, or energy with ``cost="energy_j_per_token"``), one
    panel per tokens, with the accuracy–cost Pareto front.

    ``dense_latency`` maps tokens to dense's cost (drawn as a dotted line), in ``cost`` units.
    """
    metric = joined["metric"].iloc[0]
    maximize = higher_is_better(metric)
    ms = joined.assign(cost_scaled=pd.to_numeric(joined[cost]) * scale)
    groups = list(ms.groupby("tokens", sort=True))
    fig, axes = _panels(len(groups), width=4.6, height=3.4)
    for ax, (tokens, g) in zip(axes, groups):
        for fmt, gf in g.groupby("format"):
            ax.scatter(gf["cost_scaled"], gf["value_mean"], s=22, color=colors[fmt], label=fmt, zorder=2)
        _front_line(
            ax,
            pareto_front(g, "cost_scaled", "value_mean", maximize_y=maximize),
            "cost_scaled",
            "value_mean",
            label="Pareto front",
        )
        if dense_latency.get(tokens):
            ax.axvline(dense_latency[tokens] * scale, color="grey", ls=":", lw=1, label="dense")
        ax.set_xscale("log")
        _log_axis(ax.xaxis, g["cost_scaled"])
        ax.set(title=f"{tokens} tokens", xlabel=label, ylabel=metric)
        ax.grid(alpha=0.3)
    _figure_legend(fig, axes)
    return to_data_uri(fig)


def power_trace(traces: pd.DataFrame) -> str:
    """GPU power draw over the sweep, one line per store and device (seconds since its start)."""
    fig, axes = _panels(1, width=9.0, height=3.2)
    ax = axes[0]
    for (trace, device), g in traces.groupby(["trace", "device"], sort=True, dropna=False):
        g = g.sort_values("t")
        ax.plot(g["t"] - g["t"].iloc[0], g["power_w"], lw=0.8, label=f"{trace} · {device}")
    ax.set(xlabel="seconds since the sweep started", ylabel="power (W)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return to_data_uri(fig)


def roofline(kernel: pd.DataFrame, colors: dict, peaks, datasheet) -> str:
    """Achieved TFLOP/s vs arithmetic intensity against the implied and datasheet rooflines."""
    ai = kernel["flops"] / kernel["min_bytes"]
    achieved = kernel["flops"] / kernel["median_s"] / 1e12
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for fmt in sorted(kernel["format"].unique()):
        sel = (kernel["format"] == fmt).to_numpy()
        ax.scatter(ai[sel], achieved[sel], s=18, color=colors[fmt], label=fmt, alpha=0.8, zorder=2)
    xs = np.logspace(math.log10(max(ai.min() / 2, 1e-3)), math.log10(ai.max() * 2), 200)
    for (tflops, tbps), style, label in (
        (peaks, "-", "roofline used by the records"),
        (datasheet, "--", "datasheet peak"),
    ):
        if tflops and tbps:
            ax.plot(
                xs,
                np.minimum(tflops, xs * tbps),
                style,
                color="black",
                lw=1,
                label=f"{label} ({tflops:.3g} TFLOP/s, {tbps:.3g} TB/s)",
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    _log_axis(ax.xaxis, xs)
    _log_axis(ax.yaxis, [*achieved, *(tflops for tflops, _ in (peaks, datasheet) if tflops)])
    ax.set(xlabel="arithmetic intensity (FLOP / minimum byte)", ylabel="achieved TFLOP/s")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return to_data_uri(fig)


def speedup_heatmaps(grid: pd.DataFrame) -> str:
    """One heat-map per format: speedup vs dense over (tokens, width); red slower, blue faster."""
    formats = sorted(grid["format"].unique())
    # panel size follows the grid: ~0.8 in per width column, ~0.45 in per tokens row
    width = max(2.6, 0.8 * grid["width"].nunique() + 1.4)
    height = max(2.0, 0.45 * grid["tokens"].nunique() + 1.5)
    fig, axes = _panels(len(formats), width=width, height=height)
    limit = max(1.0, float(np.nanmax(np.abs(np.log2(grid["speedup_vs_dense"])))))
    for ax, fmt in zip(axes, formats):
        g = grid[grid["format"] == fmt]
        table = g.pivot_table(
            index="tokens", columns=["width_order", "width"], values="speedup_vs_dense", aggfunc="max"
        ).sort_index()
        values = table.to_numpy(dtype=float)
        image = ax.imshow(np.log2(values), cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto", origin="lower")
        for (i, j), v in np.ndenumerate(values):
            if not math.isnan(v):
                dark = abs(math.log2(v)) > 0.6 * limit
                ax.text(j, i, f"{v:.2g}×", ha="center", va="center", fontsize=8, color="white" if dark else "black")
        ax.set_xticks(range(values.shape[1]), [w for _, w in table.columns])
        ax.set_yticks(range(values.shape[0]), table.index)
        ax.set(title=fmt, xlabel="width", ylabel="tokens")
    fig.colorbar(
        image,
        ax=axes,
        label="speedup vs dense (log scale)",
        shrink=0.8,
        format=matplotlib.ticker.FuncFormatter(lambda v, _: f"{2**v:.3g}×"),
    )
    return to_data_uri(fig)
