"""Block sparsity (BSR): W is a grid of square ``block``×``block`` tiles, of which
nnz_blocks = max(1, round(density · #blocks)) are non-zero (Python's round, half to even).

``block`` must divide in_features and out_features. Projection keeps the blocks of largest
Frobenius norm, the optimal approximation with that many blocks. Storage is BSR: the
nnz_blocks·block² values plus int32 block-column indices (nnz_blocks) and int32 block-row
pointers (out/block + 1), the layout the Triton kernel reads.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..base import StructuredLinear, register_format
from ..chunking import by_row_chunks, memory_limit
from ..sparse_support import sorted_topk
from ..validation import check_divides, check_int, divisors
from ._calibration import weighted_magnitude
from .lowrank import geometric_grid
from .unstructured import INDEX_BYTES, check_density, density_nnz

SMALLEST_GRID_BLOCK, LARGEST_GRID_BLOCK = 16, 128  # tensor-core sized tiles for the budget grid


@register_format
class BlockSparseLinear(StructuredLinear):
    """hparams ``block`` (divides in and out) and ``density`` in (0, 1]; params nnz_blocks·block²."""

    name = "blocksparse"
    block_rows: torch.Tensor  # buffers (the kept blocks' grid coordinates), typed for the checker
    block_cols: torch.Tensor
    hparam_names = ("block", "density")
    data_aware = True

    @classmethod
    def _check_hparams(cls, in_features, out_features, block=None, density=None):
        if block is None:
            raise ValueError("block is required: allowed block dividing both in_features and out_features")
        block = check_int("block", block, low=1)
        check_divides("block", block, "in_features", in_features)
        check_divides("block", block, "out_features", out_features)
        return {"block": block, "density": check_density(density)}

    @classmethod
    def count_params(cls, in_features, out_features, block, density):
        return cls.nnz_blocks_for(in_features, out_features, block, density) * block * block

    @staticmethod
    def nnz_blocks_for(in_features, out_features, block, density) -> int:
        return density_nnz(density, (in_features // block) * (out_features // block))

    @classmethod
    def hparam_grid(cls, in_features, out_features):
        common = divisors(math.gcd(in_features, out_features))
        low = min(SMALLEST_GRID_BLOCK, common[-1])
        grid = []
        for block in (b for b in common if low <= b <= max(low, LARGEST_GRID_BLOCK)):
            total = (in_features // block) * (out_features // block)
            grid += [{"block": block, "density": k / total} for k in geometric_grid(total) if k >= total // 100]
        return grid

    @classmethod
    def hparams_for_budget(cls, in_features, out_features, params, *, allow_more_flops=False):
        """Per grid block size the most tiles that fit (k = params // block²), the largest of those
        (smallest block on ties); any tile count is representable, so no grid step is lost. Its
        forward costs 2 · tokens · params <= dense, so ``allow_more_flops`` changes nothing."""
        check_int("params", params, low=1)
        best, best_count = None, 0
        for block in sorted({hp["block"] for hp in cls.hparam_grid(in_features, out_features)}):
            total = (in_features // block) * (out_features // block)
            k = min(total, params // (block * block))
            if k >= 1 and k * block * block > best_count:
                best, best_count = {"block": block, "density": k / total}, k * block * block
        return best if best is not None else super().hparams_for_budget(in_features, out_features, params)

    @property
    def grid_shape(self) -> tuple[int, int]:
        """(block rows, block columns) of the tile grid."""
        b = self.hp["block"]
        return self.out_features // b, self.in_features // b

    def nnz_blocks(self) -> int:
        return self.nnz_blocks_for(self.in_features, self.out_features, **self.hp)

    def _set_support(self, flat: torch.Tensor) -> None:
        nbc = self.grid_shape[1]
        self.block_rows.copy_(flat.div(nbc, rounding_mode="floor"))
        self.block_cols.copy_(flat.remainder(nbc))

    def _init_weights(self, dtype=None, device=None):
        b, k = self.hp["block"], self.nnz_blocks()
        self.register_buffer("block_rows", torch.empty(k, dtype=torch.long, device=device))
        self.register_buffer("block_cols", torch.empty(k, dtype=torch.long, device=device))
        self._set_support(sorted_topk(torch.rand(self.grid_shape, device=device), k))
        density = k * b * b / (self.in_features * self.out_features)
        std = 1.0 / math.sqrt(self.in_features * density)  # Var(W_ij) = 1/in over all entries
        self.values = nn.Parameter(torch.randn(k, b, b, dtype=dtype, device=device) * std)

    def _forward_torch(self, x2d):
        """One GEMM per stored tile on x's gathered column blocks; in row chunks where the gathered
        (tokens, tiles, block) copy and its products would outgrow x + y + weights."""
        per_row = 2 * self.nnz_blocks() * self.hp["block"]
        return by_row_chunks(self._forward_rows, x2d, per_row, memory_limit(self, x2d.shape[0]))

    def _forward_rows(self, x2d):
        b, (nbr, nbc) = self.hp["block"], self.grid_shape
        tokens = x2d.shape[0]
        gathered = x2d.reshape(tokens, nbc, b)[:, self.block_cols]  # (T, nnz_blocks, b)
        partial = torch.einsum("tki,koi->tko", gathered, self.values)  # one GEMM per block
        y = x2d.new_zeros(tokens, nbr, b).index_add(1, self.block_rows, partial)
        return y.reshape(tokens, self.out_features)

    def dense_weight(self):
        b, (nbr, nbc) = self.hp["block"], self.grid_shape
        tiles = self.values.new_zeros(nbr, nbc, b, b).index_put((self.block_rows, self.block_cols), self.values)
        return tiles.permute(0, 2, 1, 3).reshape(self.out_features, self.in_features)

    def forward_flops(self, tokens):
        return 2 * tokens * self.param_count()

    def storage_bytes(self):
        nnz_blocks, nbr = self.nnz_blocks(), self.grid_shape[0]
        return self.param_count() * self.weight_dtype.itemsize + INDEX_BYTES * (nnz_blocks + nbr + 1)

    @torch.no_grad()
    def _project(self, weight, X=None):
        """Keep the tiles of largest Σ W_ij² (optimal), or Σ W_ij² H_jj with H = diag(XᵀX)/tokens
        when activations X are given (optimal for the diagonal proxy Σ H_jj (W − Ŵ)_ij²)."""
        b, (nbr, nbc) = self.hp["block"], self.grid_shape
        tiles = weight.reshape(nbr, b, nbc, b).permute(0, 2, 1, 3)
        scores = weighted_magnitude(weight, X).reshape(nbr, b, nbc, b).permute(0, 2, 1, 3)
        flat = sorted_topk(scores.double().pow(2).sum((2, 3)), self.nnz_blocks())
        self._set_support(flat)
        self.values.copy_(tiles.reshape(nbr * nbc, b, b)[flat])
