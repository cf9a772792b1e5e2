"""``mbs report PATHS... --out report.html``: one self-contained HTML page from result files."""
from __future__ import annotations

HELP = "build the HTML report (Pareto fronts, roofline, speedups, recommendation) from result files"


def add_arguments(parser) -> None:
    parser.add_argument("paths", nargs="+", help="pytest-benchmark JSON files, JSONL result stores, or folders of them")
    parser.add_argument("--out", default="report.html", help="HTML file to write (default report.html)")
    parser.add_argument("--title", default="mbs report", help="page title")


def main(args) -> int:
    from ..report import build_report

    html = build_report(args.paths, args.out, title=args.title)
    print(f"report written to {html.resolve()}")
    return 0
