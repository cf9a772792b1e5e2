"""The tuning table behind ``backend="auto"``: the fastest measured backend per point.

``mbs tune STORE...`` (``mbs_layers/commands/tune.py``, which builds the table from sweep
records) writes a table keyed by (device name, format, hyper-parameters, in, out, dtype,
power-of-two token bucket) whose value is the backend with the lowest forward median there,
or ``MERGED`` where the pre-merged dense weight (dense format, same shape, same run) beat
every backend of the format. ``auto`` consults it before
its priority rule; a merged dense weight is only used without autograd (inference), since
it is a cached copy of ``dense_weight()``.

``auto`` reads the table at ``$MBS_TUNING_TABLE`` or ``~/.cache/mbs/tuning.json``. ``mbs
tune`` writes beside the results by default (never the machine-wide cache unless asked with
``--install``), atomically (a temporary file renamed into place). A table that cannot be read
(cut off, empty, not a JSON object of strings) is reported once as a warning and ignored:
``auto`` then uses its priority rule, so a damaged table never breaks a forward.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import tempfile
from functools import lru_cache
from pathlib import Path

import torch

MERGED = "merged"  # table value and resolved backend: run the pre-merged dense weight
_LEGACY_MERGED = "dense"  # what tables written before the rename hold for MERGED
log = logging.getLogger(__name__)


def table_path() -> Path:
    return Path(os.environ.get("MBS_TUNING_TABLE", Path.home() / ".cache" / "mbs" / "tuning.json"))


def device_name(device: torch.device) -> str:
    """The GPU's marketing name, or ``cpu: <processor>`` (the sweep records' ``device``)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu: {platform.processor() or platform.machine()}"


def tokens_bucket(tokens: int) -> int:
    """The power of two at or above ``tokens`` (points in one bucket share a choice)."""
    return 1 << max(0, int(tokens) - 1).bit_length()


def table_key(
    device: str, fmt: str, hparams: dict, in_features: int, out_features: int, dtype: str, tokens: int
) -> str:
    return json.dumps([device, fmt, hparams, in_features, out_features, dtype, tokens_bucket(tokens)], sort_keys=True)


def save_table(table: dict[str, str], path: Path | None = None) -> Path:
    """Write ``table`` to ``path`` (default :func:`table_path`) atomically: readers see the old
    table or the new one, never a cut-off file."""
    path = Path(path or table_path())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(table, indent=1, sort_keys=True))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    load_table.cache_clear()
    return path


@lru_cache(maxsize=1)
def load_table() -> dict[str, str]:
    """The table at :func:`table_path` (empty when there is none, or it is damaged: warned once)."""
    path = table_path()
    if not path.is_file():
        return {}
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        table = err
    if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
        log.warning(
            "tuning table %s is damaged and ignored (%s); backend='auto' uses its priority rule. "
            "Rebuild it with `mbs tune`.",
            path,
            table if isinstance(table, Exception) else "not an object of names",
        )
        return {}
    return {key: MERGED if value == _LEGACY_MERGED else value for key, value in table.items()}


def lookup(layer, x2d: torch.Tensor) -> str | None:
    """The table's choice for ``layer`` on ``x2d``, or None when it has no entry."""
    table = load_table()
    if not table:
        return None
    # remembered per layer, so a forward does not rebuild the JSON key; an entry holds the table
    # it came from and is redone once the table is reloaded
    memo = layer.__dict__.setdefault("_tuning_choices", {})
    point = (str(x2d.device), x2d.dtype, tokens_bucket(x2d.shape[0]))
    source, choice = memo.get(point, (None, None))
    if source is not table:
        key = table_key(
            device_name(x2d.device),
            layer.name,
            layer.hparams,
            layer.in_features,
            layer.out_features,
            str(x2d.dtype).removeprefix("torch."),
            x2d.shape[0],
        )
        choice = table.get(key)
        memo[point] = (table, choice)
    return choice
