"""Formats that are a chain of other formats' layers: DSFormer (2:4, then dense) and ARMOR
(block-diagonal, 2:4, block-diagonal).

The input passes through ``self.stages`` in order, so the applied matrix is the product of the
stages' dense weights (last stage leftmost), and the FLOPs, parameters and storage bytes are the
stages' sums. Each stage is a full layer of its own format, so a chain's fast backend
(``kernels/chains.py``) runs every stage through one of that format's existing backends
(cuSPARSELt or the Triton 2:4 kernel, the block-diagonal Triton GEMM, cuBLAS) with no new kernel.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

import torch
from torch import nn

from ..base import StructuredLinear
from .nm import top_in_groups
from .semi24 import GROUP, KEPT

Layer = TypeVar("Layer", bound=StructuredLinear)


class ChainLinear(StructuredLinear):
    """x ↦ stage_n(… stage_1(x)); subclasses say which stages (``_build_stages``) and fit them."""

    exact_projection = False  # alternating / block-coordinate fits, no closed form
    stages: nn.ModuleList

    def stage(self, index: int, kind: type[Layer]) -> Layer:
        """Stage ``index``, as the ``kind`` layer it is (``nn.ModuleList`` types its items as plain
        ``nn.Module``); ``TypeError`` if it is not one."""
        layer = self.stages[index]
        if not isinstance(layer, kind):
            raise TypeError(f"{self.name} stage {index} is a {type(layer).__name__}, not a {kind.__name__}")
        return layer

    def stage_layers(self) -> Iterator[StructuredLinear]:
        """The stages in application order, each as the ``StructuredLinear`` it is."""
        return (self.stage(i, StructuredLinear) for i in range(len(self.stages)))

    def _build_stages(self, dtype=None, device=None) -> list[StructuredLinear]:
        """The stage layers (bias-free, in application order)."""
        raise NotImplementedError

    def _init_weights(self, dtype=None, device=None):
        self.stages = nn.ModuleList(self._build_stages(dtype=dtype, device=device))

    def _forward_torch(self, x2d):
        for stage in self.stage_layers():
            x2d = stage._forward_torch(x2d)
        return x2d

    def dense_weight(self):
        first, *rest = self.stage_layers()
        w = first.dense_weight()
        for stage in rest:
            w = stage.dense_weight() @ w
        return w

    def forward_flops(self, tokens):
        return sum(stage.forward_flops(tokens) for stage in self.stage_layers())

    def flops_unseen_by_torch(self, tokens):
        return sum(stage.flops_unseen_by_torch(tokens) for stage in self.stage_layers())  # the 2:4 stage's

    def storage_bytes(self):
        return sum(stage.storage_bytes() for stage in self.stage_layers())


def keep_2_of_4(scores: torch.Tensor) -> torch.Tensor:
    """Boolean mask keeping the 2 largest ``scores`` of every 4 consecutive entries of a row."""
    m, n = scores.shape
    mask = torch.zeros(m, n // GROUP, GROUP, dtype=torch.bool, device=scores.device)
    mask.scatter_(-1, top_in_groups(scores, KEPT, GROUP), True)
    return mask.reshape(m, n)


@torch.no_grad()
def load_2_of_4(stage, core: torch.Tensor, mask: torch.Tensor) -> None:
    """Store the 2:4 matrix ``core`` (support ``mask``) in a ``semi24`` stage layer."""
    flat = mask.flatten().nonzero().squeeze(1)
    stage._set_support(flat)
    stage.values.copy_(core.flatten()[flat].to(stage.values.dtype))
