"""Block tensor-train (BTT) beyond the generic contract: storage, optimal projection, named errors."""

import pytest
from projection_helpers import check_param_count_is_stored_numel, check_projection_is_the_blockwise_optimum, ids

import mbs_layers as mbs

CASES = [  # (name, in, out, hparams)
    ("btt", 24, 36, {"rank": 2}),
    ("btt", 30, 20, {"rank": 2, "in_factors": (5, 6), "out_factors": (4, 5)}),
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
        ("btt", 24, 36, {"rank": 7}, "rank=7 is out of range"),  # min(m1, n2) = min(6, 6)
        ("btt", 24, 36, {}, "rank is required"),
        ("btt", 24, 36, {"rank": 1, "in_factors": (5, 5)}, "in_factors"),
        ("btt", 24, 36, {"rank": 1, "in_factors": 24}, "in_factors"),
        ("btt", 24, 36, {"rank": 1, "out_factors": (6, 0)}, "out_factors"),
        ("btt", 24, 36, {"rank": 1, "out_factors": (4, 3, 3)}, "out_factors"),
    ],
)
def test_bad_hparams_raise_named_valueerror(name, in_f, out_f, hp, named):
    with pytest.raises(ValueError, match=named):
        mbs.build(name, in_f, out_f, **hp)
