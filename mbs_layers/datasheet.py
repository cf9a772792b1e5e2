"""Datasheet dense peaks (vendor datasheets), the one table the sweep and the report share.

For labelling and as the fallback roofline only: dense rates (2:4 records carry actual FLOPs,
which sparse tensor cores run at these same rates). Pure data, no torch.
"""

from __future__ import annotations

_A100 = {"bfloat16": 312e12, "float16": 312e12, "tf32": 156e12, "float32": 19.5e12}
_H100 = {"bfloat16": 989e12, "float16": 989e12, "tf32": 495e12, "float32": 67e12}
# (name fragments that must all appear in the device name) -> dense peaks in FLOP/s and HBM B/s.
DATASHEET = (
    (("A100", "80GB"), _A100, 2.04e12),
    (("A100",), _A100, 1.56e12),
    (("H100",), _H100, 3.35e12),
)


def datasheet_peaks(device_name: str) -> dict | None:
    """``{"flops": {dtype: FLOP/s}, "bandwidth": B/s}`` from the datasheet, or None if unknown."""
    for fragments, flops, bandwidth in DATASHEET:
        if all(f in str(device_name) for f in fragments):
            return {"flops": dict(flops), "bandwidth": bandwidth}
    return None
