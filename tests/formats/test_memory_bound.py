"""Peak extra memory of forward, dense_weight and approximate, for every registered format.

For each format in ``mbs.FORMATS`` (a new format is covered without editing this file), at
budgets 1%..50% (and 100%) from ``hparams_for_budget`` and shapes up to 4096x4096, the bytes each call
allocates (``live_bytes.LiveBytes``, counted in the dispatcher) stay below a constant times
the memory the call needs anyway (see docs/formats.md, "Memory bounds"):

  forward       5 x (x + y + weights)  each planned / chunked intermediate fits x + y + weights;
                                       a step's input, its output and a permuted copy may be alive
                                       at once (tt, the deepest chain, reaches 4.3x)
  dense_weight  4 x (W + weights)      the result plus a scatter / permuted copy of it
  approximate  12 x (W + weights)      a float64 copy of W (2x) and its SVD factors with
                                       LAPACK workspace (~6x), or an iterative solver's residuals

Runs on the meta device (nothing is computed or allocated). A call that cannot run on meta
(sparse kernels, data-dependent iterative solvers, lstsq) is measured on real CPU tensors at
``CPU_SHAPE`` instead, so every format is still checked.
"""

import pytest
import torch
from live_bytes import LiveBytes

import mbs_layers as mbs

BOUNDS = {"forward": 5.0, "dense_weight": 4.0, "approximate": 12.0}
META_SHAPES = (256, 1296, 4096)
CPU_SHAPE = 64
BUDGETS = (0.01, 0.05, 0.25, 0.5)
F32 = 4


def peak_ratios(name: str, n: int, frac: float, device: str) -> dict[str, float] | None:
    """{call: peak extra bytes / bytes it needs anyway}, or None if no setting fits the budget."""
    try:
        hp = mbs.FORMATS[name].hparams_for_budget(n, n, max(1, int(frac * n * n)))
    except ValueError:
        return None
    make = (
        (lambda *shape: torch.randn(*shape)) if device == "cpu" else (lambda *shape: torch.empty(*shape, device="meta"))
    )
    tokens = n if device == "meta" else 32
    ratios = {}
    with torch.no_grad():
        weight = make(n, n)
        with LiveBytes() as mem:
            layer = mbs.approximate(name, weight, backend="torch", **hp)
        stored = layer.storage_bytes()
        ratios["approximate"] = mem.peak / (n * n * F32 + stored)
        with LiveBytes() as mem:
            layer.dense_weight()
        ratios["dense_weight"] = mem.peak / (n * n * F32 + stored)
        x = make(tokens, n)
        with LiveBytes() as mem:
            layer(x)
        ratios["forward"] = mem.peak / (2 * tokens * n * F32 + stored)
    return ratios


def runs_on_meta(name: str) -> bool:
    """Whether the format's calls run on meta tensors, probed at the first budget that fits
    (ARMOR exists only above half of dense)."""
    try:
        return any(peak_ratios(name, 64, frac, "meta") is not None for frac in (0.5, 1.0))
    except (NotImplementedError, RuntimeError):  # no meta kernel, or a value-dependent step
        return False


@pytest.mark.parametrize("name", sorted(mbs.FORMATS))
def test_peak_memory_within_bound(name):
    if runs_on_meta(name):  # 1.0 as well, so formats that only exist near dense size are checked
        cases = [(n, frac, "meta") for n in META_SHAPES for frac in (*BUDGETS, 1.0)]
    else:  # the first budget that fits: BLAST's iterative projection takes seconds even at 64
        cases = [(CPU_SHAPE, frac, "cpu") for frac in (0.25, 0.5, 1.0)]
    checked = 0
    for n, frac, device in cases:
        ratios = peak_ratios(name, n, frac, device)
        if ratios is None:
            continue
        checked += 1
        for call, ratio in ratios.items():
            assert ratio <= BOUNDS[call], f"{name} {call} at {n}x{n}, budget {frac}: {ratio:.2f}x"
        if device == "cpu":
            break
    assert checked, f"{name}: no setting fits even the dense budget"


def test_meter_counts_a_product_and_its_release():
    a = torch.randn(100, 100)
    with LiveBytes() as mem:
        b = a @ a
        c = b + 1
        del b
        d = c * 2  # noqa: F841  (b was released: two 100x100 results alive at most)
    assert mem.peak == 2 * 100 * 100 * 4
