"""Block sparsity (blocksparse): optimal projection, counts, BSR storage, budget grid, named errors."""

import pytest
import torch
from sparse_helpers import check_reference_runs_in, dropped_norm

import mbs_layers as mbs


@pytest.mark.parametrize("out_f,in_f,block,density", [(24, 36, 6, 0.4), (32, 16, 16, 0.5), (9, 6, 3, 0.01)])
def test_blocksparse_projection_keeps_largest_norm_blocks(rng, out_f, in_f, block, density):
    w = torch.randn(out_f, in_f, dtype=torch.float64, generator=rng)
    layer = mbs.approximate("blocksparse", w, block=block, density=density)
    nblocks = (out_f // block) * (in_f // block)
    k = max(1, round(density * nblocks))
    assert layer.param_count() == k * block * block
    block_sq = w.reshape(out_f // block, block, in_f // block, block).pow(2).sum((1, 3))
    err = torch.linalg.norm(layer.dense_weight() - w)
    torch.testing.assert_close(err, dropped_norm(block_sq.flatten(), k))


def test_blocksparse_storage_is_bsr_values_and_int32_indices():
    layer = mbs.build("blocksparse", 64, 32, block=8, density=0.25)  # 32 blocks -> 8 kept
    assert layer.param_count() == 8 * 64
    assert layer.storage_bytes() == 8 * 64 * 4 + 4 * 8 + 4 * (32 // 8 + 1)
    assert layer.forward_flops(5) == 2 * 5 * 8 * 64


@pytest.mark.parametrize(
    "hp,name",
    [
        ({"block": 5, "density": 0.5}, "block=5"),
        ({"block": 0, "density": 0.5}, "block"),
        ({"density": 0.5}, "block"),
        ({"block": 4, "density": 0.0}, "density"),
        ({"block": 4}, "density"),
    ],
)
def test_blocksparse_bad_hparams_raise_named_error(hp, name):
    with pytest.raises(ValueError, match=name):
        mbs.build("blocksparse", 16, 8, **hp)


def test_blocksparse_budget_grid_prefers_tensor_core_blocks():
    blocks = {hp["block"] for hp in mbs.FORMATS["blocksparse"].hparam_grid(256, 512)}
    assert blocks == {16, 32, 64, 128}


@pytest.mark.parametrize("name,hp", [("blocksparse", {"block": 4, "density": 0.5})])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_reference_runs_in_every_float_dtype(rng, name, hp, dtype):
    check_reference_runs_in(rng, name, hp, dtype)
