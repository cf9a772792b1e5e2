"""Token chunking for reference forwards whose intermediates grow faster than their inputs.

Each token (row of x) is transformed independently, so a forward whose per-token intermediate
is larger than the token's input + output (BTT's rank-r middle, block-sparse's gathered tiles,
SLTrain's gathered columns) runs over chunks of rows, each within ``memory_limit``: the
elements of x + y + the layer's weights, the memory the call needs anyway. FLOPs are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def memory_limit(layer, rows: int) -> int:
    """Elements of x + y for ``rows`` tokens plus the layer's weights."""
    return rows * (layer.in_features + layer.out_features) + layer.param_count()


def rows_per_chunk(rows: int, per_row: int, limit: int) -> int:
    """The most rows (at least 1, at most ``rows``) whose ``per_row`` elements each fit ``limit``."""
    return max(1, min(rows, limit // max(1, per_row)))


def by_row_chunks(
    fn: Callable[[torch.Tensor], torch.Tensor], x2d: torch.Tensor, per_row: int, limit: int
) -> torch.Tensor:
    """``fn(x2d)``, computed on row chunks so ``per_row`` x chunk elements stay within ``limit``."""
    step = rows_per_chunk(x2d.shape[0], per_row, limit)
    if step >= x2d.shape[0]:
        return fn(x2d)
    return torch.cat([fn(x2d[i : i + step]) for i in range(0, x2d.shape[0], step)])
