"""``mbs profile`` writes a Chrome/Perfetto trace per format."""

import json

import pytest

from mbs_layers.cli import main
from mbs_layers.sweep.profiling import parse_shape


def test_profile_writes_a_trace_per_format(tmp_path, capsys):
    assert (
        main(
            [
                "profile",
                "--format",
                "dense",
                "lowrank",
                "--shape",
                "48x40",
                "--tokens",
                "8",
                "--steps",
                "1",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    written = capsys.readouterr().out.split()
    assert len(written) == 2
    for path, name in zip(written, ("dense", "lowrank")):
        assert name in path
        events = json.loads(open(path).read())["traceEvents"]
        assert any(e.get("name", "").startswith(f"{name}[") for e in events)  # the labelled step


@pytest.mark.parametrize("shape", ["48", "48x", "axb", "0x4"])
def test_bad_shape_is_named(shape):
    with pytest.raises(ValueError, match="shape"):
        parse_shape(shape)
