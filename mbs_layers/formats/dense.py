"""Dense: the unstructured baseline every format is measured against; W stored as is."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..base import StructuredLinear, register_format


@register_format
class DenseLinear(StructuredLinear):
    """W (out, in) stored densely; params = out·in; any shape."""

    name = "dense"

    @classmethod
    def _check_hparams(cls, in_features, out_features):
        return {}

    @classmethod
    def count_params(cls, in_features, out_features):
        return in_features * out_features

    @classmethod
    def hparam_grid(cls, in_features, out_features):
        return [{}]

    def _init_weights(self, dtype=None, device=None):
        bound = 1.0 / math.sqrt(self.in_features)
        self.weight = nn.Parameter(
            torch.empty(self.out_features, self.in_features, dtype=dtype, device=device).uniform_(-bound, bound)
        )

    def _forward_torch(self, x2d):
        return x2d @ self.weight.T

    def dense_weight(self):
        return self.weight

    def forward_flops(self, tokens):
        return 2 * tokens * self.in_features * self.out_features

    @torch.no_grad()
    def _project(self, weight):
        self.weight.copy_(weight)
