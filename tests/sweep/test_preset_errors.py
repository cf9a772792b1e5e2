"""Preset mistakes are ValueErrors naming the key: unknown names, empty lists, YAML syntax, types."""

import pytest
from sweep_helpers import write_preset

from mbs_layers.cli import main as cli_main
from mbs_layers.sweep.presets import load_preset


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"formats": ["lowrank", "lowrnak"]}, "formats"),
        ({"formats": []}, "formats"),
        ({"backends": ["torch", "trtion"]}, "backends"),
        ({"backends": []}, "backends"),
        ({"shapes": 64}, "shapes"),
        ({"timer": {"threads": 0}}, "timer.threads"),
    ],
)
def test_bad_preset_values_name_the_key(tmp_path, overrides, key):
    with pytest.raises(ValueError, match=f"'?{key}'?"):
        load_preset(write_preset(tmp_path / "p.yaml", **overrides))


def test_yaml_syntax_error_is_a_value_error_naming_the_file(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("shapes: [[32, 32]\ntokens: [4]\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_preset(path)
    assert cli_main(["sweep", "--preset", str(path), "--out", str(tmp_path / "s.jsonl")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mbs: error: preset") and "broken.yaml" in err[0]
