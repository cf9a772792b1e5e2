"""The report's history section: trend plots per kernel and GPU with change points marked.

Each figure is one (GPU, dtype, backend, format, metric): a line per point (shape, tokens,
hyper-parameters, pass) over the commits, each relative to its own first commit so that
points of different speed share one axis. Steps found by :func:`mbs_layers.history.check.check`
are marked at their first bad commit: red up-triangles for regressions, green down-triangles
for improvements, grey circles below the threshold.
"""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import pandas as pd

from ..history.check import check, readable
from ..history.series import commit_order, label, series
from ..history.store import HistoryStore
from .figures import to_data_uri

MARKERS = {"regression": ("^", "tab:red"), "improvement": ("v", "tab:green"), "below threshold": ("o", "grey")}


def trend_figure(lines: list[tuple[str, pd.DataFrame]], steps: pd.DataFrame, commits: list[str], metric: str) -> str:
    """One trend plot: ``lines`` are (label, per-commit frame) pairs; ``steps`` their findings."""
    fig, ax = plt.subplots(figsize=(9, 3.6), layout="constrained")
    position = {c: i for i, c in enumerate(commits)}
    for name, per_commit in lines:
        x = per_commit["commit_sha"].map(position)
        y = per_commit["value"] / per_commit["value"].iloc[0]
        (line,) = ax.plot(x, y, marker=".", lw=1, label=name)
        for row in steps[steps["kernel"] == name].itertuples():
            at = per_commit.index[per_commit["commit_sha"] == row.first_bad_commit][0]
            shape, color = MARKERS[row.verdict]
            ax.scatter(
                position[row.first_bad_commit],
                y[at],
                marker=shape,
                s=90,
                color=color,
                edgecolors=line.get_color(),
                zorder=3,
            )
    ticks = sorted(set(position.values()))
    ax.set_xticks(ticks[:: max(1, len(ticks) // 15)])
    ax.set_xticklabels([commits[i][:7] for i in ax.get_xticks()], rotation=45, fontsize=7)
    ax.set_xlabel("commit (oldest first)")
    ax.set_ylabel(f"{metric} / first commit")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return to_data_uri(fig)


def history_section(db_path, *, max_figures: int = 8, threshold: float = 0.05) -> dict:
    """Figures, a note on those not drawn, and the table of steps found, for the history DB."""
    frame = HistoryStore(db_path).frame()
    commits = commit_order(frame)
    findings = check(frame, threshold=threshold)
    groups: dict[tuple, list] = {}
    for key, metric, per_commit in series(frame):
        fmt = json.loads(key["point"])["format"]
        groups.setdefault((key["gpu"], key["dtype"], key["backend"], fmt, metric), []).append(
            (label(key["point"]), per_commit)
        )
    drawn = []
    for (gpu, dtype, backend, fmt, metric), members in groups.items():
        names = [name for name, _ in members]
        mine = findings[
            (findings["gpu"] == gpu)
            & (findings["dtype"] == dtype)
            & (findings["backend"] == backend)
            & (findings["metric"] == metric)
            & findings["kernel"].isin(names)
        ]
        drawn.append(
            (
                (-(mine["verdict"] == "regression").sum(), -len(mine)),  # regressions first
                f"{gpu} · {dtype} · {backend} · {fmt} · {metric}",
                members,
                mine,
                metric,
            )
        )
    drawn.sort(key=lambda d: (d[0], d[1]))
    figs = [
        {"title": title, "uri": trend_figure(members, mine, commits, metric)}
        for _, title, members, mine, metric in drawn[:max_figures]
    ]
    note = f"{len(drawn) - max_figures} more trend plots not drawn." if len(drawn) > max_figures else ""
    return {
        "db": str(db_path),
        "commits": len(commits),
        "gpus": sorted(set(frame["gpu"])),
        "figures": figs,
        "note": note,
        "findings": readable(findings).to_html(index=False, classes="data", border=0) if len(findings) else "",
    }
