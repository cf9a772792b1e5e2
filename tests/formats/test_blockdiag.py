"""Block-diagonal format beyond the generic contract: storage, optimal projection, named errors."""

import pytest
from projection_helpers import check_param_count_is_stored_numel, check_projection_is_the_blockwise_optimum, ids

import mbs_layers as mbs

CASES = [  # (name, in, out, hparams)
    ("blockdiag", 24, 36, {"nblocks": 6}),
    ("blockdiag", 36, 24, {"nblocks": 3}),
]


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_param_count_is_stored_numel(case):
    check_param_count_is_stored_numel(case)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_projection_error_is_the_blockwise_optimum(case, rng):
    check_projection_is_the_blockwise_optimum(case, rng)


@pytest.mark.parametrize(
    "name,in_f,out_f,hp,named",
    [
        ("blockdiag", 24, 36, {"nblocks": 5}, "nblocks"),
        ("blockdiag", 24, 36, {"nblocks": 8}, "nblocks=8 must divide out_features"),
        ("blockdiag", 24, 36, {}, "nblocks is required"),
    ],
)
def test_bad_hparams_raise_named_valueerror(name, in_f, out_f, hp, named):
    with pytest.raises(ValueError, match=named):
        mbs.build(name, in_f, out_f, **hp)
