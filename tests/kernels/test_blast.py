"""Triton backend of blast against the torch reference: forward and all gradients.

On CPU these run under TRITON_INTERPRET=1 (set by conftest), so shapes stay small; sizes are
chosen off the block sizes (70 tokens: one full and one partial 64-row tile; odd block widths)
to exercise every mask.
"""

import pytest
import torch
from triton_helpers import check_matches_reference

CASES = [  # (format, in, out, hparams)
    ("blast", 24, 40, {"nblocks": 4, "rank": 5}),
    ("blast", 66, 33, {"nblocks": 3, "rank": 33}),  # rank spans two BLOCK_R chunks
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("name,in_f,out_f,hp", CASES)
def test_triton_matches_reference_cpu_interpreter(name, in_f, out_f, hp, dtype):
    check_matches_reference(name, in_f, out_f, hp, dtype, "cpu")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    "name,in_f,out_f,hp",
    CASES
    + [
        ("blast", 1024, 768, {"nblocks": 16, "rank": 96}),
    ],
)
def test_triton_matches_reference_gpu(name, in_f, out_f, hp, dtype):
    check_matches_reference(name, in_f, out_f, hp, dtype, "cuda", tokens=1000, elementwise=False)
