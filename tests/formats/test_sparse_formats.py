"""unstructured, semi24 and blocksparse: optimal projections, counts, storage formulas, named errors."""
import pytest
import torch
from sparse_helpers import assert_close_to_reference

import mbs_layers as mbs


def dropped_norm(scores_sq: torch.Tensor, kept: int) -> torch.Tensor:
    """Root of the sum of all but the ``kept`` largest squared scores along the last dim."""
    return scores_sq.sort(dim=-1).values[..., : scores_sq.shape[-1] - kept].sum().sqrt()


@pytest.mark.parametrize("out_f,in_f,density", [(24, 40, 0.3), (17, 9, 0.05), (8, 8, 1.0)])
def test_unstructured_projection_error_is_the_dropped_magnitudes(rng, out_f, in_f, density):
    w = torch.randn(out_f, in_f, dtype=torch.float64, generator=rng)
    layer = mbs.approximate("unstructured", w, density=density)
    nnz = max(1, round(density * out_f * in_f))
    assert layer.param_count() == nnz == int((layer.dense_weight() != 0).sum())
    err = torch.linalg.norm(layer.dense_weight() - w)
    torch.testing.assert_close(err, dropped_norm(w.flatten() ** 2, nnz))


def test_unstructured_counts_rounding_and_csr_storage():
    layer = mbs.build("unstructured", 10, 5, density=0.25, dtype=torch.float16)  # 12.5 -> 12 (half to even)
    assert layer.param_count() == 12
    assert layer.storage_bytes() == 12 * 2 + 4 * 12 + 4 * (5 + 1)
    assert mbs.build("unstructured", 10, 5, density=1e-6).param_count() == 1
    assert layer.forward_flops(7) == 2 * 12 * 7


@pytest.mark.parametrize("density", [0.0, -0.1, 1.5, float("nan"), None, "0.5"])
def test_unstructured_bad_density_raises_named_error(density):
    with pytest.raises(ValueError, match="density"):
        mbs.build("unstructured", 8, 8, density=density)


@pytest.mark.parametrize("out_f,in_f", [(12, 16), (5, 36)])
def test_semi24_projection_keeps_two_largest_of_each_four(rng, out_f, in_f):
    w = torch.randn(out_f, in_f, dtype=torch.float64, generator=rng)
    layer = mbs.approximate("semi24", w)
    kept = layer.dense_weight().reshape(out_f, in_f // 4, 4)
    assert bool(((kept != 0).sum(-1) == 2).all())
    err = torch.linalg.norm(layer.dense_weight() - w)
    torch.testing.assert_close(err, dropped_norm(w.reshape(out_f, -1, 4) ** 2, 2))


def test_semi24_counts_storage_and_flops():
    layer = mbs.build("semi24", 32, 8, dtype=torch.bfloat16)
    assert layer.param_count() == 128
    assert layer.storage_bytes() == 128 * 2 + 128 * 2 // 8  # values + 2 metadata bits per value
    assert layer.forward_flops(3) == 2 * 128 * 3
    assert layer.dense_equivalent_flops(3) == 2 * 32 * 8 * 3
    fresh = layer.dense_weight().reshape(8, 8, 4)
    assert bool(((fresh != 0).sum(-1) == 2).all())


def test_semi24_in_features_not_multiple_of_four_raises():
    with pytest.raises(ValueError, match="in_features=10"):
        mbs.build("semi24", 10, 8)
    with pytest.raises(ValueError, match="in_features"):
        mbs.FORMATS["semi24"].hparams_for_budget(10, 8, 40)


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


@pytest.mark.parametrize("hp,name", [({"block": 5, "density": 0.5}, "block=5"),
                                     ({"block": 0, "density": 0.5}, "block"),
                                     ({"density": 0.5}, "block"),
                                     ({"block": 4, "density": 0.0}, "density"),
                                     ({"block": 4}, "density")])
def test_blocksparse_bad_hparams_raise_named_error(hp, name):
    with pytest.raises(ValueError, match=name):
        mbs.build("blocksparse", 16, 8, **hp)


def test_blocksparse_budget_grid_prefers_tensor_core_blocks():
    blocks = {hp["block"] for hp in mbs.FORMATS["blocksparse"].hparam_grid(256, 512)}
    assert blocks == {16, 32, 64, 128}


@pytest.mark.parametrize("name,hp", [("unstructured", {"density": 0.3}), ("semi24", {}),
                                     ("blocksparse", {"block": 4, "density": 0.5})])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_reference_runs_in_every_float_dtype(rng, name, hp, dtype):
    layer = mbs.build(name, 16, 8, dtype=dtype, backend="torch", bias=False, **hp)
    x = torch.randn(5, 16, generator=rng).to(dtype)
    assert_close_to_reference(layer(x), x.double() @ layer.dense_weight().double().T)
