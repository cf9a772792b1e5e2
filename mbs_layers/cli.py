"""The ``mbs`` command line. Each sub-command lives in ``mbs_layers/commands/<name>.py``.

A command module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``main(args) -> int``; it imports heavy dependencies inside ``main`` so ``mbs --help`` is fast.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mbs", description="Benchmark and profile structured linear layers.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        name = getattr(module, "NAME", info.name)  # e.g. compile_check.py is `compile-check`
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(_main=module.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; a ``ValueError`` (bad user input, e.g. an unknown preset name) is
    reported as ``mbs: error: <message>`` on stderr with exit status 2, like argparse's errors."""
    args = build_parser().parse_args(argv)
    try:
        return int(args._main(args) or 0)
    except ValueError as err:
        print(f"mbs: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
