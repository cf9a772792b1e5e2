"""Block-diagonal: W = diag(B_1..B_k); projection keeps the diagonal blocks (optimal)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..base import StructuredLinear, register_format
from ..validation import check_divides, check_int, divisors


class NBlocksFormat(StructuredLinear):
    """Shared hyper-parameter handling of formats with ``nblocks`` dividing in and out."""

    hparam_names = ("nblocks",)

    @classmethod
    def _check_hparams(cls, in_features, out_features, nblocks=None):
        if nblocks is None:
            raise ValueError("nblocks is required: allowed nblocks dividing in_features and out_features")
        nblocks = check_int("nblocks", nblocks, low=1)
        check_divides("nblocks", nblocks, "in_features", in_features)
        check_divides("nblocks", nblocks, "out_features", out_features)
        return {"nblocks": nblocks}

    @classmethod
    def hparam_grid(cls, in_features, out_features):
        return [{"nblocks": k} for k in divisors(math.gcd(in_features, out_features))]


@register_format
class BlockDiagLinear(NBlocksFormat):
    """W = diag(B_1..B_k), each block (out/k, in/k); ``nblocks`` must divide in and out; params mn/k."""

    name = "blockdiag"

    @classmethod
    def count_params(cls, in_features, out_features, nblocks):
        return in_features * out_features // nblocks

    def _init_weights(self, dtype=None, device=None):
        k = self.hp["nblocks"]
        p, s = self.in_features // k, self.out_features // k
        # Each output sees only p = in/k inputs: 1/fan-in keeps nn.Linear's output variance.
        self.blocks = nn.Parameter(torch.randn(k, s, p, dtype=dtype, device=device) / math.sqrt(p))

    def _forward_torch(self, x2d):
        k, _, p = self.blocks.shape
        y = torch.bmm(x2d.reshape(-1, k, p).transpose(0, 1), self.blocks.transpose(1, 2))
        return y.transpose(0, 1).reshape(-1, self.out_features)

    def dense_weight(self):
        return torch.block_diag(*self.blocks)

    def forward_flops(self, tokens):
        return 2 * tokens * self.param_count()

    @torch.no_grad()
    def _project(self, weight):
        k, s, p = self.blocks.shape
        diagonal = torch.arange(k, device=weight.device)
        self.blocks.copy_(weight.reshape(k, s, k, p)[diagonal, :, diagonal])
