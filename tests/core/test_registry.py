"""The registry at the bottom: lazy loading sees every format and backend; names are unique."""

import subprocess
import sys

import pytest
import torch

import mbs_layers as mbs
from mbs_layers import backends, registry


def test_importing_one_format_module_still_loads_every_backend():
    """The first look-up runs the package's loader, whichever module was imported first."""
    code = (
        "from mbs_layers.formats.lowrank import LowRankLinear\n"
        "layer = LowRankLinear(8, 8, rank=2, backend='triton')\n"
        "import mbs_layers\n"
        "assert 'tt' in mbs_layers.FORMATS and layer.backend == 'triton'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_format_name_taken_twice_names_both_classes():
    taken = mbs.FORMATS["lowrank"]

    class Impostor(mbs.StructuredLinear):
        name = "lowrank"

    with pytest.raises(ValueError, match=f"{taken.__qualname__}.*Impostor"):
        registry.register_format(Impostor)
    assert mbs.FORMATS["lowrank"] is taken


def test_backend_lookups_accept_a_class_a_layer_or_a_name():
    cls = mbs.FORMATS["monarch"]
    layer = mbs.build("monarch", 16, 16, nblocks=4, backend="torch")
    assert backends.format_key("monarch") is backends.format_key(layer) is backends.format_key(cls) is cls
    assert backends.fast_backends("monarch") == backends.fast_backends(cls)
    with pytest.raises(ValueError, match="name"):
        backends.fast_backends("no-such-format")


def test_the_key_is_the_exact_class():
    """A subclass (different math, perhaps) gets only the backends registered for it."""
    lowrank = mbs.FORMATS["lowrank"]

    class Scaled(lowrank):
        def _forward_torch(self, x2d):
            return 2 * super()._forward_torch(x2d)

    assert "triton" in backends.fast_backends(lowrank)
    assert backends.fast_backends(Scaled) == {}
    assert backends.allowed_backends(Scaled) == ["auto", "torch"]


def test_merged_is_the_one_name_of_the_dense_fallback():
    from mbs_layers import tuning

    assert backends.MERGED == tuning.MERGED == "merged"
    layer = mbs.build("lowrank", 8, 8, rank=2, backend="torch")
    x = torch.randn(3, 8)
    torch.testing.assert_close(backends.forward_impl(layer, backends.MERGED)(layer, x), layer._forward_torch(x))
