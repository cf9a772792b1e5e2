"""``kernels/lowrank.py`` (the fused chain kernel, the ELL kernel, ``ChainSpec``) vs the torch
reference: forward and gradients on fresh random inputs.

On CPU they run under TRITON_INTERPRET=1 with 16-wide blocks, so the odd sizes below leave
partial token, feature and rank blocks.
"""

import copy

import pytest
import torch

import mbs_layers as mbs
from mbs_layers.kernels import lowrank as kernels
from mbs_layers.kernels.sltrain import ell_table

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = {torch.float32: 2e-4, torch.float16: 2e-2, torch.bfloat16: 5e-2}
CASES = [  # (name, in, out, hparams)
    ("lowrank", 37, 53, {"rank": 5}),
    ("lowrank", 53, 18, {"rank": 18}),
    ("lowrank_light", 37, 53, {"rank": 5}),
    ("lowrank_light", 40, 21, {"rank": 21}),
    ("lowrank_light", 19, 30, {"rank": 19}),  # r = in: V is empty, y = x Uᵀ
    ("sltrain", 37, 53, {"rank": 5, "density": 0.1}),
    ("sltrain", 53, 29, {"rank": 17, "density": 0.3}),
]


def run(layer, x, backend):
    """Output and (x, parameter) gradients of a fixed random loss through ``backend``."""
    layer.backend = backend
    x = x.detach().requires_grad_()
    y = layer(x)
    weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).to(y)
    params = [p for n, p in layer.named_parameters() if n != "bias"]
    return [y, *torch.autograd.grad((y * weights).sum(), [x, *params])]


def check_against_reference(layer, x, tol):
    """The Triton backend equals the float64 torch reference on the same (rounded) values."""
    ref_layer = copy.deepcopy(layer).double()
    expected = run(ref_layer, x.double(), "torch")
    got = run(layer, x, "triton")
    for g, e in zip(got, expected):
        assert g.dtype == x.dtype
        scale = max(1.0, e.detach().abs().max().item()) if e.numel() else 1.0
        torch.testing.assert_close(g.detach().double(), e.detach(), rtol=tol, atol=tol * scale)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("name,in_f,out_f,hp", CASES)
def test_triton_matches_reference(name, in_f, out_f, hp, dtype, rng):
    layer = mbs.build(name, in_f, out_f, dtype=dtype, device=DEVICE, **hp)
    x = torch.randn(2, 11, in_f, generator=rng).to(DEVICE, dtype)  # 22 tokens: a partial block
    check_against_reference(layer, x, TOL[dtype])


@pytest.mark.parametrize("name,in_f,out_f,hp", CASES[::2])
def test_inference_under_no_grad_matches_reference(name, in_f, out_f, hp, rng):
    layer = mbs.build(name, in_f, out_f, device=DEVICE, backend="triton", **hp)
    x = torch.randn(22, in_f, generator=rng).to(DEVICE)
    with torch.no_grad():
        got = layer(x)
        expected = copy.deepcopy(layer).double()._forward_torch(x.double()) + layer.bias
    torch.testing.assert_close(got.double(), expected, rtol=TOL[torch.float32], atol=TOL[torch.float32])


@pytest.mark.gpu
@pytest.mark.parametrize("name,in_f,out_f,hp", CASES)
def test_triton_matches_reference_bf16(name, in_f, out_f, hp, rng):
    layer = mbs.build(name, in_f, out_f, dtype=torch.bfloat16, device=DEVICE, **hp)
    x = torch.randn(300, in_f, generator=rng).to(DEVICE, torch.bfloat16)
    check_against_reference(layer, x, TOL[torch.bfloat16])


@pytest.mark.parametrize("name,hp", [("lowrank_light", {"rank": 12}), ("sltrain", {"rank": 12, "density": 0.2})])
def test_two_gemm_fallback_above_max_fused_rank(name, hp, monkeypatch, rng):
    monkeypatch.setattr(kernels, "MAX_FUSED_RANK", 8)
    layer = mbs.build(name, 30, 20, device=DEVICE, **hp)
    check_against_reference(layer, torch.randn(17, 30, generator=rng).to(DEVICE), TOL[torch.float32])


def test_sltrain_triton_follows_a_loaded_support(rng):
    """load_state_dict with another seed's support: the cached ELL tables are rebuilt, not reused."""
    layer = mbs.build("sltrain", 37, 53, device=DEVICE, rank=5, density=0.1, seed=0)
    x = torch.randn(22, 37, generator=rng).to(DEVICE)
    layer.backend = "triton"
    layer(x)  # builds and caches the tables for seed 0's support
    other = mbs.build("sltrain", 37, 53, device=DEVICE, rank=5, density=0.1, seed=1)
    assert not torch.equal(other.col, layer.col)
    layer.load_state_dict(other.state_dict())
    check_against_reference(layer, x, TOL[torch.float32])


@pytest.mark.parametrize("split", [2, 3])
def test_split_output_sweep_and_strided_views(split, rng):
    """Several programs per token block (each recomputing z) and strided operands give x Aᵀ Bᵀ."""
    x = torch.randn(21, 70, generator=rng).to(DEVICE)[:, 5:45]  # (21, 40), row stride 70
    a = torch.randn(9, 40, generator=rng).to(DEVICE)
    b = torch.randn(9, 50, generator=rng).to(DEVICE).T  # (50, 9), transposed strides
    y = torch.full((21, 60), float("nan"), device=DEVICE)[:, 7:57]
    z = torch.empty(21, 9, device=DEVICE)
    kernels.chain(x, a, b, y, z=z, split=split)
    torch.testing.assert_close(z, x @ a.T, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(y, x @ a.T @ b.T, rtol=1e-4, atol=1e-4)


def test_ell_table_lists_each_group_with_value_positions():
    major = torch.tensor([2, 0, 2, 2, 1])
    minor = torch.tensor([7, 3, 1, 4, 0])
    idx, pos = ell_table(major, minor, 4)
    assert idx.tolist() == [[3, -1, -1], [0, -1, -1], [7, 1, 4], [-1, -1, -1]]
    assert pos.tolist() == [[1, -1, -1], [4, -1, -1], [0, 2, 3], [-1, -1, -1]]


@pytest.mark.parametrize("name", ["lowrank", "lowrank_light", "sltrain"])
def test_triton_backend_rejects_mismatched_input_dtype(name):
    hp = mbs.FORMATS[name].hparams_for_budget(32, 32, 300)
    layer = mbs.build(name, 32, 32, device=DEVICE, backend="triton", **hp)
    with pytest.raises(ValueError, match="dtype"):
        layer(torch.randn(4, 32, dtype=torch.float16, device=DEVICE))


def test_autotune_keys_bucket_the_token_count():
    """Token counts key the tuning by power-of-2 bucket, so each new batch size does not re-tune."""
    from mbs_layers.kernels import block_gemm, monarch

    assert "T" not in kernels._chain_kernel.keys and "T_BUCKET" in kernels._chain_kernel.keys
    assert "T" not in kernels._ell_kernel.keys and "T_BUCKET" in kernels._ell_kernel.keys
    assert {"M", "K_CHUNK"}.isdisjoint(block_gemm._block_gemm_kernel.keys)
    assert "M" not in monarch._btt_fused_kernel.keys


@pytest.mark.parametrize("name,in_f,out_f,hp", CASES)
def test_weight_grads_without_input_grad_match_reference(name, in_f, out_f, hp, rng):
    """An input that needs no gradient skips gx; the weight gradients stay those of the reference."""
    layer = mbs.build(name, in_f, out_f, device=DEVICE, **hp)
    x = torch.randn(22, in_f, generator=rng).to(DEVICE)
    grads = {}
    for backend, lay, xx in (("torch", copy.deepcopy(layer).double(), x.double()), ("triton", layer, x)):
        lay.backend = backend
        y = lay(xx)  # xx does not require grad
        weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).to(y)
        params = [p for n, p in lay.named_parameters() if n != "bias"]
        grads[backend] = torch.autograd.grad((y * weights).sum(), params)
    for g, e in zip(grads["triton"], grads["torch"]):
        scale = max(1.0, e.abs().max().item()) if e.numel() else 1.0
        tol = TOL[torch.float32]
        torch.testing.assert_close(g.double(), e, rtol=tol, atol=tol * scale)


def random_ell(n_rows, n_cols, width, rng, n_values=50):
    """A padded ELL table (idx, pos) with -1 pads (at least one per row when width > 1) and its values."""
    idx = torch.randint(0, n_cols, (n_rows, width), generator=rng, dtype=torch.int32)
    pos = torch.randint(0, n_values, (n_rows, width), generator=rng, dtype=torch.int32)
    pad = torch.rand(n_rows, width, generator=rng) < 0.3
    pad[:, -1] |= width > 1
    idx[pad], pos[pad] = -1, -1
    return idx.to(DEVICE), pos.to(DEVICE), torch.randn(n_values, generator=rng).to(DEVICE)


def ell_dense(idx, pos, vals, n_cols):
    """The (rows, n_cols) matrix S of a padded ELL table (repeated columns add up)."""
    s = torch.zeros(idx.shape[0], n_cols, dtype=torch.float64, device=idx.device)
    keep = idx >= 0
    rows = torch.arange(idx.shape[0], device=idx.device)[:, None].expand_as(idx)
    s.index_put_((rows[keep], idx[keep].long()), vals[pos[keep].long()].double(), accumulate=True)
    return s


@pytest.mark.parametrize("tokens,n,width", [(21, 37, 5), (16, 16, 1), (40, 9, 12)])
def test_ell_kernel_alone_adds_x_st_to_strided_y(tokens, n, width, rng):
    """``ell_accumulate`` (the ELL kernel) adds x Sᵀ to what y holds, on strided views and partial blocks."""
    x = torch.randn(tokens, 50, generator=rng).to(DEVICE)[:, 3:33]  # (tokens, 30), row stride 50
    idx, pos, vals = random_ell(n, 30, width, rng)
    y0 = torch.randn(tokens, n + 8, generator=rng).to(DEVICE)
    y = y0.clone()[:, 4 : 4 + n]
    kernels.ell_accumulate(x, y, (idx, pos, vals))
    expected = y0[:, 4 : 4 + n].double() + x.double() @ ell_dense(idx, pos, vals, 30).T
    torch.testing.assert_close(y.double(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])  # S after the chain (IEEE fp32), fused
@pytest.mark.parametrize("split", [1, 2])
def test_chain_with_every_part_at_once(split, dtype, rng):
    """Identity part, stored z and the ELL part together (no format uses all three), split sweeps;
    the factors' ragged strides (9 columns) go through the aligned copies."""

    def rand(*shape):
        return torch.randn(*shape, generator=rng).to(DEVICE, dtype)

    x, a, b, x_id = rand(19, 33), rand(7, 33), rand(9, 45).T[:, 1:8], rand(19, 7)
    idx, pos, vals = random_ell(45, 33, 4, rng)
    vals = vals.to(dtype)
    y = torch.full((19, 45), float("nan"), device=DEVICE, dtype=dtype)
    z = torch.empty(19, 7, device=DEVICE, dtype=dtype)
    kernels.chain(x, a, b, y, x_id=x_id, z=z, sparse=(idx, pos, vals), split=split)
    z_ref = x.double() @ a.double().T + x_id.double()
    tol = TOL[dtype] * 4
    torch.testing.assert_close(z.double(), z_ref, rtol=tol, atol=tol)
    expected = z.double() @ b.double().T + x.double() @ ell_dense(idx, pos, vals, 33).T
    torch.testing.assert_close(y.double(), expected, rtol=tol, atol=tol * 10)


def test_ragged_weights_are_copied_aligned_and_aligned_ones_are_not():
    w = torch.randn(5, 30)
    ok = torch.randn(5, 32)
    assert kernels._aligned(ok) is ok
    for ragged in (w, w.T, torch.randn(5, 40)[:, 3:35]):
        got = kernels._aligned(ragged)
        assert torch.equal(got, ragged) and got.stride(-1) == 1 and got.stride(0) % 4 == 0
        assert got.data_ptr() % 16 == 0


def test_chain_spec_decides_the_kernel_flags():
    spec = kernels.ChainSpec(17, identity=True, ell_width=3)
    assert spec.r_pad == 32 and kernels.ChainSpec(3).r_pad == 16
    assert spec.constexprs() == {"R_PAD": 32, "HAS_IDENTITY": True, "STORE_Z": False, "HAS_ELL": True}
    assert kernels.ChainSpec(5, store_z=True).constexprs()["HAS_ELL"] is False
    with pytest.raises(AttributeError):
        spec.rank = 3  # frozen: one launch's description


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"rank": kernels.MAX_FUSED_RANK + 1}, "fused range"),
        ({"rank": -1}, "fused range"),
        ({"rank": 4, "ell_width": -2}, "ell_width"),
    ],
)
def test_chain_spec_rejects_what_the_kernel_cannot_run(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kernels.ChainSpec(**kwargs)


def test_mismatched_ell_tables_are_rejected(rng):
    x, y = torch.randn(4, 6, device=DEVICE), torch.zeros(4, 5, device=DEVICE)
    idx, pos, vals = random_ell(5, 6, 3, rng)
    with pytest.raises(ValueError, match="ELL tables"):
        kernels.ell_accumulate(x, y, (idx, pos[:, :2], vals))
    with pytest.raises(ValueError, match="ELL tables"):
        kernels.ell_accumulate(x, y, (idx[:4], pos[:4], vals))
