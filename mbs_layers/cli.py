"""The ``mbs`` command line. Each sub-command lives in ``mbs_layers/commands/<name>.py``.

A command module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``main(args) -> int``; it imports heavy dependencies inside ``main`` so ``mbs --help`` is fast.
Options shared by many commands are checked here before the command runs: ``--device``
(a device this machine has) and ``--out`` (a writable file, or folder where the module sets
``OUT_IS_FOLDER = True``). Log records of ``mbs_layers`` (resume counts, skipped lines) go
to stderr.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from . import commands
from .validation import check_device, check_output_path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mbs", description="Benchmark and profile structured linear layers.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        name = getattr(module, "NAME", info.name)  # e.g. compile_check.py is `compile-check`
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(_main=module.main, _out_is_folder=getattr(module, "OUT_IS_FOLDER", False))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; a ``ValueError`` (bad user input, e.g. an unknown preset name) or an
    ``OSError`` (a file that cannot be read or written) is reported as one line
    ``mbs: error: <message>`` on stderr with exit status 2, like argparse's errors."""
    args = build_parser().parse_args(argv)
    configure_logging()
    try:
        if getattr(args, "device", None) is not None:
            check_device("--device", args.device)
        if getattr(args, "out", None) is not None:
            check_output_path("--out", args.out, folder=args._out_is_folder)
        return int(args._main(args) or 0)
    except (ValueError, OSError) as err:
        print(f"mbs: error: {err}", file=sys.stderr)
        return 2


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record (it may be replaced)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def configure_logging() -> None:
    """``mbs_layers`` info messages to stderr as ``mbs: <message>`` (once per process)."""
    logger = logging.getLogger("mbs_layers")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("mbs: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


if __name__ == "__main__":
    sys.exit(main())
