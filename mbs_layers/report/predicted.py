"""The report's *predicted* tables: roofline bounds at the A100 and H100 datasheet peaks for
every measured point's counts, shown apart from (never mixed with) measured times."""

from __future__ import annotations

import pandas as pd

from ..predicted import PREDICTED_GPUS, predicted_seconds

POINT = ["format", "hparams_key", "in_features", "out_features", "tokens", "dtype", "pass"]


def predicted_table(kernel: pd.DataFrame, gpus=PREDICTED_GPUS) -> pd.DataFrame:
    """One row per point (any backend, any device it was run on) with ``flops``/``min_bytes``,
    and one ``<gpu> predicted ms`` column per GPU; empty without counted records."""
    counted = kernel.dropna(subset=["flops", "min_bytes"]) if not kernel.empty else kernel
    if counted.empty:
        return pd.DataFrame()
    points = counted.drop_duplicates(subset=POINT)[[*POINT, "flops", "min_bytes"]]
    columns = {
        f"{gpu} predicted ms": [
            1e3 * s if (s := predicted_seconds(gpu, d, f, b)) else None
            for d, f, b in zip(points["dtype"], points["flops"], points["min_bytes"])
        ]
        for gpu in gpus
    }
    return (
        points.assign(**columns)
        .sort_values(["dtype", "pass", "in_features", "tokens", "format"], kind="mergesort")
        .reset_index(drop=True)
    )
