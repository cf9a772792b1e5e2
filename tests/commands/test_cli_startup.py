"""``mbs --help`` stays fast: building the parser imports no torch (nor numpy), since each
command imports its heavy dependencies inside ``main``."""

import subprocess
import sys

CHECK = """
import sys
from mbs_layers.cli import build_parser
build_parser().format_help()
heavy = sorted(m for m in ("torch", "numpy", "triton", "pandas", "matplotlib") if m in sys.modules)
assert not heavy, f"building the parser imported {heavy}"
"""


def test_building_the_parser_imports_no_torch():
    subprocess.run([sys.executable, "-c", CHECK], check=True)


def test_help_lists_every_command():
    out = subprocess.run(
        [sys.executable, "-m", "mbs_layers", "--help"], check=True, capture_output=True, text=True
    ).stdout
    for command in ("sweep", "tune", "report", "compare", "accuracy", "run", "profile", "project"):
        assert command in out
