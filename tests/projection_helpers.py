"""Reference errors of optimal projections, shared by the format tests (tests/formats/test_<format>.py):
Eckart–Young tails, the Van Loan–Pitsianis rearrangement, blockwise optima, and the checks that
several formats run on their own cases."""

import torch

import mbs_layers as mbs


def tail(singular_values, keep):
    return singular_values[keep:].square().sum().sqrt()


def rearranged(w, m1, n1, m2, n2):
    """Van Loan–Pitsianis R(W)[(i1, j1), (i2, j2)] = W[i1·m2 + i2, j1·n2 + j2]."""
    return w.reshape(m1, m2, n1, n2).permute(0, 2, 1, 3).reshape(m1 * n1, m2 * n2)


def rel_err(layer, w):
    return (torch.linalg.norm(layer.dense_weight() - w) / torch.linalg.norm(w)).item()


def check_param_count_is_numel_of_stored_weights(name, in_f, out_f, hp):
    layer = mbs.build(name, in_f, out_f, **hp)
    stored = sum(p.numel() for n, p in layer.named_parameters() if n != "bias")
    assert layer.param_count() == stored == mbs.FORMATS[name].count_params(in_f, out_f, **layer.hparams)


def check_hparam_grid_is_valid(name, in_f, out_f):
    """Every grid point of ``name`` at an awkward shape validates, and the largest one builds and runs."""
    f64 = torch.float64
    cls = mbs.FORMATS[name]
    grid = list(cls.hparam_grid(in_f, out_f))
    assert grid
    for hp in grid:
        assert cls.check_hparams(in_f, out_f, **hp) == hp
    hp = cls.hparams_for_budget(
        in_f, out_f, max(cls.count_params(in_f, out_f, **g) for g in grid), allow_more_flops=True
    )  # tiny shapes: some formats cost more than dense
    layer = mbs.build(name, in_f, out_f, dtype=f64, **hp)
    assert layer(torch.randn(2, in_f, dtype=f64)).shape == (2, out_f)


# ----- blockdiag, monarch, btt: the blockwise optima of their projections -----
F64 = {"dtype": torch.float64, "backend": "torch"}


def ids(case):
    return f"{case[0]}-{case[1]}x{case[2]}-" + "-".join(f"{k}{v}" for k, v in case[3].items())


def tail_norm(block, rank):
    """Frobenius error of the best rank-``rank`` approximation of ``block`` (Eckart–Young)."""
    return torch.linalg.svdvals(block)[rank:].square().sum()


def monarch_rank(k, q, i, j):
    """r_ij by its definition: rows a of w1[j] whose intermediate (j·q + a) lands in residue i."""
    return sum((j * q + a) % k == i for a in range(q))


def expected_error(name, w, hp):
    """Root-sum of what each format must drop, computed block by block from the definitions."""
    out_f, in_f = w.shape
    if name == "blockdiag":
        k = hp["nblocks"]
        s, p = out_f // k, in_f // k
        kept = sum(w[g * s : (g + 1) * s, g * p : (g + 1) * p].square().sum() for g in range(k))
        return (w.square().sum() - kept).sqrt()
    if name == "monarch":
        k = hp["nblocks"]
        p, q = in_f // k, min(in_f, out_f) // k
        return sum(
            tail_norm(w[i::k, j * p : (j + 1) * p], monarch_rank(k, q, i, j)) for i in range(k) for j in range(k)
        ).sqrt()
    (n1, n2), (_, m2) = hp["in_factors"], hp["out_factors"]
    return sum(tail_norm(w[i2::m2, j1 * n2 : (j1 + 1) * n2], hp["rank"]) for i2 in range(m2) for j1 in range(n1)).sqrt()


def check_param_count_is_stored_numel(case):
    name, in_f, out_f, hp = case
    layer = mbs.build(name, in_f, out_f, **F64, **hp)
    stored = sum(p.numel() for n, p in layer.named_parameters() if n != "bias")
    assert layer.param_count() == stored < in_f * out_f


def check_projection_is_the_blockwise_optimum(case, rng):
    """Projecting a Gaussian matrix leaves exactly what each block must drop (``expected_error``)."""
    name, in_f, out_f, hp = case
    w = torch.randn(out_f, in_f, generator=rng, dtype=torch.float64)
    layer = mbs.approximate(name, w, **hp)
    err = torch.linalg.norm(layer.dense_weight() - w)
    torch.testing.assert_close(err, expected_error(name, w, layer.hparams), rtol=1e-9, atol=1e-9)
