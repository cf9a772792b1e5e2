"""The ``mbs`` entry point: bad input is a one-line error, help lists every packaged preset."""

import pytest

from mbs_layers.cli import build_parser, main
from mbs_layers.sweep.presets import PACKAGED


def test_a_value_error_from_a_command_is_a_one_line_error(tmp_path, capsys):
    assert main(["sweep", "--preset", "no-such-preset", "--out", str(tmp_path / "s.jsonl"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mbs: error: ") and "no-such-preset" in err and "Traceback" not in err


def test_sweep_help_lists_every_packaged_preset(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sweep", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert all(name in out for name in PACKAGED)
    assert "sparse24" in out
