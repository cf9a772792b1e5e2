"""Fast paths of the chain formats (DSFormer, ARMOR): each stage runs on its own format's kernel.

A chain layer (``formats/_chain.py``) is a sequence of ordinary layers (``semi24``,
``blockdiag``, ``dense``), so no new kernel is needed: the chain's ``cusparselt`` backend runs
its 2:4 stage on cuSPARSELt and its ``triton`` backend on the Triton 2:4 kernel, the
block-diagonal stages on the block-GEMM Triton kernel and the dense stage on cuBLAS, in both.
Each stage's backend is differentiable, so the chain is too. A chain backend can run an input
when every stage's backend can.
"""

from __future__ import annotations

from ..backends import fast_backends, register_backend
from ..formats.armor import ArmorLinear
from ..formats.dsformer import DSFormerLinear

# chain backend -> the backend each stage format runs ("torch" for the dense stage is cuBLAS).
STAGE_BACKENDS = {
    "cusparselt": {"semi24": "cusparselt", "blockdiag": "triton", "dense": "torch"},
    "triton": {"semi24": "triton", "blockdiag": "triton", "dense": "torch"},
}
PRIORITY = {"cusparselt": 10, "triton": 5}  # as for semi24: cuSPARSELt first where it runs
CHAIN_FORMATS = (DSFormerLinear, ArmorLinear)


def _stage_impls(layer, backend):
    """(stage, its BackendImpl or None for the torch reference) for every stage of ``layer``."""
    for stage in layer.stages:
        name = STAGE_BACKENDS[backend][stage.name]
        yield stage, (None if name == "torch" else fast_backends(stage.name)[name])


def _unsupported(backend):
    def check(layer, x2d):
        # Every stage check looks at the device, the dtype and the stage's shape; those of x2d
        # stand for the stage inputs (same device and dtype, widths are the stages' own).
        for stage, impl in _stage_impls(layer, backend):
            reason = impl.unsupported(stage, x2d) if impl is not None else None
            if reason is not None:
                return f"its {stage.name} stage ({stage.in_features} → {stage.out_features}): {reason}"
        return None

    return check


def _forward(backend):
    def forward(layer, x2d):
        for stage, impl in _stage_impls(layer, backend):
            x2d = stage._forward_torch(x2d) if impl is None else impl.forward(stage, x2d)
        return x2d

    forward.__doc__ = f"``x2d @ W.T`` of a chain layer, every stage on its {backend} path."
    return forward


for _fmt in CHAIN_FORMATS:
    for _backend in STAGE_BACKENDS:
        register_backend(_fmt, _backend, priority=PRIORITY[_backend], unsupported=_unsupported(_backend))(
            _forward(_backend)
        )
