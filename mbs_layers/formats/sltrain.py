"""SLTrain (Han et al. 2024): W = U V + S, S sparse on a fixed random support.

The support is drawn once from (shape, density, seed) and never changes; only its values
train. It is stored in CSR (``crow`` (out + 1), ``col`` (nnz), int32) next to the values.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..base import StructuredLinear, register_format
from ..chunking import memory_limit
from ..validation import check_float, check_int
from .lowrank import check_rank, rank_grid, truncated_svd

DEFAULT_DENSITY = 0.03  # the paper's default δ
GRID_DENSITIES = (0.01, 0.03, 0.05, 0.1, 0.2)
INDEX_BYTES = 4  # int32 CSR indices


def support_size(in_features: int, out_features: int, density: float) -> int:
    """nnz of S: density · out · in, rounded half up."""
    return int(density * in_features * out_features + 0.5)


def random_support(in_features, out_features, nnz, seed) -> tuple[torch.Tensor, torch.Tensor]:
    """CSR (crow, col), int32, of ``nnz`` distinct positions drawn uniformly, determined by ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    flat = torch.randperm(in_features * out_features, generator=gen)[:nnz].sort().values
    rows, cols = flat // in_features, flat % in_features
    crow = torch.zeros(out_features + 1, dtype=torch.int64)
    crow[1:] = torch.bincount(rows, minlength=out_features).cumsum(0)
    return crow.to(torch.int32), cols.to(torch.int32)


def support_rows(crow: torch.Tensor, nnz: int) -> torch.Tensor:
    """COO row index of every stored value, from CSR row pointers and the (host-known) nnz.

    Passing ``nnz`` as ``output_size`` keeps repeat_interleave from reading the total back from
    the device, a host sync on every forward otherwise.
    """
    counts = (crow[1:] - crow[:-1]).long()
    return torch.repeat_interleave(torch.arange(counts.numel(), device=crow.device), counts, output_size=nnz)


@register_format
class SLTrainLinear(StructuredLinear):
    """W = U V + S, U (out, r), V (r, in), S with nnz = density · in · out (rounded) on a seeded random
    support; 1 <= r <= min(in, out), 0 < density <= 1 (nnz >= 1); params r(in + out) + nnz."""

    name = "sltrain"
    crow: torch.Tensor  # buffers (CSR of the fixed support), typed for the checker
    col: torch.Tensor
    hparam_names = ("rank", "density", "seed")
    # The sparse part runs through gather/index_add, which FlopCounterMode does not count.
    MAX_ALTERNATIONS = 500
    STALL_WINDOW, STALL_TOL = 10, 1e-2  # stop when 10 rounds gain < 1 % (see _project)

    @classmethod
    def _check_hparams(cls, in_features, out_features, rank=None, density=DEFAULT_DENSITY, seed=0):
        rank = check_rank(cls.name, in_features, out_features, rank)
        density = check_float("density", density, low=0.0, high=1.0, low_open=True)
        if support_size(in_features, out_features, density) < 1:
            raise ValueError(
                f"density={density} leaves no nonzero in a ({out_features}, {in_features}) matrix: "
                f"allowed density >= 1 / (in · out) = {1 / (in_features * out_features):.3g}"
            )
        seed = check_int("seed", seed, low=0, high=2**63 - 1)
        return {"rank": rank, "density": density, "seed": seed}

    @classmethod
    def count_params(cls, in_features, out_features, rank, density=DEFAULT_DENSITY, seed=0):
        return rank * (in_features + out_features) + support_size(in_features, out_features, density)

    @classmethod
    def hparam_grid(cls, in_features, out_features):
        dense = in_features * out_features
        return [
            {"rank": r, "density": d}
            for d in GRID_DENSITIES
            if support_size(in_features, out_features, d) >= 1
            for r in rank_grid(min(in_features, out_features))
            if cls.count_params(in_features, out_features, r, d) <= dense
        ]

    @property
    def nnz(self) -> int:
        return self.col.numel()

    def _init_weights(self, dtype=None, device=None):
        r, fk = self.hp["rank"], {"dtype": dtype, "device": device}
        nnz = support_size(self.in_features, self.out_features, self.hp["density"])
        crow, col = random_support(self.in_features, self.out_features, nnz, self.hp["seed"])
        self.register_buffer("crow", crow.to(device))
        self.register_buffer("col", col.to(device))
        # Split the 1/in variance evenly: half from U V, half from S (whose entries cover only
        # a density fraction of W, so each is scaled up by 1/density).
        self.U = nn.Parameter(torch.randn(self.out_features, r, **fk) / math.sqrt(r))
        self.V = nn.Parameter(torch.randn(r, self.in_features, **fk) / math.sqrt(2 * self.in_features))
        scale = 1 / math.sqrt(2 * self.in_features * self.hp["density"])
        self.values = nn.Parameter(torch.randn(nnz, **fk) * scale)

    def sparse_product(self, x2d: torch.Tensor) -> torch.Tensor:
        """``x2d @ S.T`` by gathering x's columns and index-adding into the output rows, over chunks
        of the support whose (tokens × chunk) gather stays within x + y + weights."""
        rows, cols = support_rows(self.crow, self.nnz), self.col.long()
        y = x2d.new_zeros(x2d.shape[0], self.out_features)
        step = max(1, memory_limit(self, x2d.shape[0]) // max(1, 2 * x2d.shape[0]))  # gathered + product
        for start in range(0, self.nnz, step):
            sl = slice(start, start + step)
            y = y.index_add(1, rows[sl], x2d[:, cols[sl]] * self.values[sl])
        return y

    def sparse_weight(self) -> torch.Tensor:
        """S as a dense (out, in) tensor."""
        s = self.values.new_zeros(self.out_features, self.in_features)
        return s.index_put((support_rows(self.crow, self.nnz), self.col.long()), self.values)

    def _forward_torch(self, x2d):
        return (x2d @ self.V.T) @ self.U.T + self.sparse_product(x2d)

    def dense_weight(self):
        return self.U @ self.V + self.sparse_weight()

    def forward_flops(self, tokens):
        return self.hparam_flops(self.in_features, self.out_features, tokens, **self.hp)

    @classmethod
    def hparam_flops(cls, in_features, out_features, tokens, **hp):
        """2 · tokens · (r(in + out) + nnz): one multiply-add per stored value and token (no support drawn)."""
        return 2 * tokens * cls.count_params(in_features, out_features, **hp)

    def flops_unseen_by_torch(self, tokens):
        return 2 * tokens * self.nnz  # S's product runs through torch.sparse

    def storage_bytes(self):
        return self.param_count() * self.weight_dtype.itemsize + INDEX_BYTES * (self.crow.numel() + self.nnz)

    @torch.no_grad()
    def _project(self, weight):
        """Truncated SVD, then S = the residual on the support, then alternate to a fixed point.

        Given U V, the residual on the support is the optimal S (it zeroes the error there); the
        SVD of W alone is optimal only for S = 0, so the three blocks are then refined by
        alternating least squares — S = P_Ω(W − U V), V = U⁺(W − S), U = (W − S)V⁺ — each step
        optimal given the others, so the error never increases. Alternation can crawl along a
        plateau before converging fast, so it stops only when ``STALL_WINDOW`` rounds together
        gain less than ``STALL_TOL`` of the error (or at float64 precision, or after
        ``MAX_ALTERNATIONS``): a matrix already in the format is recovered to ~1e-15, while on
        a Gaussian matrix it stops after ~10 rounds.
        """
        w = weight.double()
        support = (support_rows(self.crow, self.nnz), self.col.long())
        u, v = truncated_svd(w, self.hp["rank"], reuse=True)
        s, err = residual_on_support(w, u @ v, support)
        history = [err]
        floor = 4 * torch.finfo(w.dtype).eps * torch.linalg.norm(w)
        while len(history) <= self.MAX_ALTERNATIONS and err > floor:
            target = w.index_put(support, -s, accumulate=True)  # W - S
            v = torch.linalg.pinv(u) @ target
            u = target @ torch.linalg.pinv(v)
            s, err = residual_on_support(w, u @ v, support)
            history.append(err)
            if len(history) > self.STALL_WINDOW and err > (1 - self.STALL_TOL) * history[-1 - self.STALL_WINDOW]:
                break
        self.U.copy_(u)
        self.V.copy_(v)
        self.values.copy_(s)


def residual_on_support(weight, low_rank, support) -> tuple[torch.Tensor, torch.Tensor]:
    """(S values, ‖W − L − S‖) for the optimal S on ``support`` given the low-rank part L."""
    residual = weight - low_rank
    return residual[support], torch.linalg.norm(residual.index_put(support, residual.new_zeros(())))
