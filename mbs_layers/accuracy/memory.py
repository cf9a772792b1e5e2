"""Equal-memory fields of accuracy records: storage beside parameters, and which points are one model.

Equal parameters are not equal memory: unstructured sparsity stores an index per value,
2:4 sparsity 2 bits of metadata per value. Every accuracy record therefore carries
``storage_bytes`` (``StructuredLinear.storage_bytes``: values, indices and metadata, bias
excluded) and ``storage_fraction`` (of the dense layers' bytes in the same dtype) beside
``param_count`` and ``param_fraction``.

Some settings of different formats are the same model (the same set of matrices, the same
parameters): BTT with rank r and factors (m1, m2), (n1, n2) is a grid of m2 × n1 rank-r
blocks, and so is Monarch with k = m2 = n1 blocks when q/k = r (q = min(in, out)/k), e.g.
BTT rank 1 = Monarch √n blocks; Kronecker A ⊗ B is the two-core tensor train of rank 1.
``MODEL_SIGNATURES`` declares, per format, a canonical description of its model; records
carry it as ``model_signature`` and the report counts each signature once per parameter
count (``mbs_layers.report.analysis.mark_duplicates``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from torch import nn


def _block_lowrank(row_groups: int, col_groups: int, rank: int) -> str:
    """W's rows ``i::row_groups`` × contiguous column groups form blocks of rank ``rank``."""
    return f"block-lowrank(rows/{row_groups}, cols/{col_groups}, rank {rank})"


def _monarch(n_in: int, n_out: int, hp: dict) -> str | None:
    k = hp["nblocks"]
    q = min(n_in, n_out) // k
    return _block_lowrank(k, k, q // k) if q % k == 0 else None  # uneven block ranks otherwise


def _tensor_train(cls_name: str) -> Callable[[int, int, dict], str]:
    def signature(n_in: int, n_out: int, hp: dict) -> str:
        from .. import format_class

        out_factors, in_factors, ranks = format_class(cls_name).structure(hp)
        return f"tensor-train(out {tuple(out_factors)}, in {tuple(in_factors)}, ranks {tuple(ranks)})"

    return signature


# format -> (in, out, validated hparams) -> canonical model description (None: no known twin)
MODEL_SIGNATURES: dict[str, Callable[[int, int, dict], str | None]] = {
    "lowrank": lambda n_in, n_out, hp: _block_lowrank(1, 1, hp["rank"]),
    "btt": lambda n_in, n_out, hp: _block_lowrank(hp["out_factors"][1], hp["in_factors"][0], hp["rank"]),
    "monarch": _monarch,
    "tt": _tensor_train("tt"),
    "kronecker": _tensor_train("kronecker"),
}


def model_signature(name: str, layers: Iterable[tuple[int, int, dict]]) -> str | None:
    """The canonical model of format ``name`` at the (in, out, hparams) of each layer, or None
    when any layer's setting has no declared equivalent."""
    from .. import format_class

    describe = MODEL_SIGNATURES.get(name)
    if describe is None:
        return None
    parts = []
    for n_in, n_out, hp in layers:
        part = describe(n_in, n_out, format_class(name).check_hparams(n_in, n_out, **hp))
        if part is None:
            return None
        parts.append(f"{n_out}x{n_in}: {part}")
    return "; ".join(sorted(set(parts)))  # one entry per distinct layer shape and setting


def memory_fields(name: str, layers: list[tuple[int, int, dict]], params: int, storage: int, itemsize: int) -> dict:
    """``param_fraction``, ``storage_bytes``, ``storage_fraction`` and ``model_signature`` of a
    point whose structured layers have the (in, out, hparams) ``layers``, ``params`` parameters
    and ``storage`` bytes; dense is the same layers' in·out values of ``itemsize`` bytes."""
    dense = sum(n_in * n_out for n_in, n_out, _ in layers)
    return {
        "param_fraction": params / dense,
        "storage_bytes": storage,
        "storage_fraction": storage / (dense * itemsize),
        "model_signature": model_signature(name, layers),
    }


def module_memory_fields(name: str, modules: list[nn.Module]) -> dict:
    """:func:`memory_fields` of a model's structured layers ``modules`` (plus ``param_count``)."""
    params = sum(m.param_count() for m in modules)
    return {
        "param_count": params,
        **memory_fields(
            name,
            [(m.in_features, m.out_features, m.hparams) for m in modules],
            params,
            sum(m.storage_bytes() for m in modules),
            modules[0].weight_dtype.itemsize,
        ),
    }
