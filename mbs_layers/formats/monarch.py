"""Monarch (Dao et al. 2022) in fly's ``MonarchLinear`` layout; projection is closed form and optimal.

With k = ``nblocks``, p = in/k, s = out/k and q = min(in, out)/k (fly's choice: the square
factor sits on the smaller side), the layer is
    h = blockdiag(w1) x              w1: (k, q, p), h has k·q features, h[j·q + a]
    z[i, t] = h[t·k + i]             the stride permutation (a reshape-transpose)
    y[s'·k + i] = (w2[i] z[i])[s']   w2: (k, s, q), outputs interleaved the same way
exactly as fly's ``blockdiag_butterfly_multiply``. Block (i, j) of W — rows ``i::k``, columns
``j·p : (j+1)·p`` — only involves the rows a of w1[j] with (j·q + a) ≡ i (mod k) and the
matching columns of w2[i], so it is an independent product of rank
    r_ij = #{a < q : (j·q + a) ≡ i (mod k)}  in {floor(q/k), ceil(q/k)}  (= q/k when k | q),
and the best approximation is a rank-r_ij truncated SVD of every block (``block_ranks``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..base import register_format
from .blockdiag import NBlocksFormat
from .btt import block_grid, blockwise_truncated_svd


@register_format
class MonarchLinear(NBlocksFormat):
    """Monarch with ``nblocks`` k dividing in and out; params q(in + out) with q = min(in, out)/k,
    i.e. 2n²/k when square (n = in = out) and in²/k + in·out/k when in <= out."""

    name = "monarch"

    @classmethod
    def count_params(cls, in_features, out_features, nblocks):
        return min(in_features, out_features) // nblocks * (in_features + out_features)

    def _init_weights(self, dtype=None, device=None):
        k = self.hp["nblocks"]
        p, s, q = self.in_features // k, self.out_features // k, min(self.in_features, self.out_features) // k
        fk = {"dtype": dtype, "device": device}
        self.w1 = nn.Parameter(torch.randn(k, q, p, **fk) / math.sqrt(p))
        self.w2 = nn.Parameter(torch.randn(k, s, q, **fk) / math.sqrt(q))

    def _forward_torch(self, x2d):
        k, q, p = self.w1.shape
        h = torch.bmm(x2d.reshape(-1, k, p).transpose(0, 1), self.w1.transpose(1, 2))  # (k, B, q)
        # z[i, b, t] = h[b, t·k + i], made contiguous as (b, i, t) so the bmm reads it in place
        # (the (k, B, q) permute bmm would otherwise copy again): one copy, as published code
        z = h.transpose(0, 1).reshape(-1, q, k).transpose(1, 2).contiguous().transpose(0, 1)
        y = torch.bmm(z, self.w2.transpose(1, 2))  # (k, B, s)
        return y.permute(1, 2, 0).reshape(-1, self.out_features)

    def dense_weight(self):
        k, q, _ = self.w1.shape
        first = torch.block_diag(*self.w1)  # rows j·q + a
        first = first.reshape(q, k, -1).transpose(0, 1).reshape(k * q, -1)  # rows i·q + t
        second = torch.block_diag(*self.w2) @ first  # rows i·s + s'
        return second.reshape(k, -1, self.in_features).transpose(0, 1).reshape(self.out_features, -1)

    def forward_flops(self, tokens):
        return 2 * tokens * self.param_count()

    def block_ranks(self) -> torch.Tensor:
        """(k, k) integer tensor: r_ij, the rank of block (i, j) (rows i::k, input block j)."""
        k, q, _ = self.w1.shape
        residues = (torch.arange(k)[:, None] * q + torch.arange(q)) % k  # [j, a] -> i
        return torch.stack([(residues == i).sum(1) for i in range(k)])

    @torch.no_grad()
    def _project(self, weight):
        k, q, _ = self.w1.shape
        left, right = blockwise_truncated_svd(block_grid(weight, k, k), math.ceil(q / k))
        # Row a of w1[j] is component a // k of block ((j·q + a) mod k, j).
        groups, features = torch.arange(k, device=weight.device)[:, None], torch.arange(q, device=weight.device)
        j, a = groups, features
        self.w1.copy_(right[(j * q + a) % k, j, a // k])
        # Column t of w2[i] is intermediate f = t·k + i, i.e. row a = f mod q of w1[f // q].
        i, t = groups, features
        f = t * k + i
        self.w2.copy_(left[i, f // q, :, (f % q) // k].transpose(1, 2))
