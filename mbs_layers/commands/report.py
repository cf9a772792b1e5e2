"""``mbs report PATHS... --out report.html``: one self-contained HTML page from result files."""

from __future__ import annotations

HELP = "build the HTML report (Pareto fronts, roofline, speedups, recommendation) from result files"


def add_arguments(parser) -> None:
    parser.add_argument("paths", nargs="+", help="pytest-benchmark JSON files, JSONL result stores, or folders of them")
    parser.add_argument("--out", default="report.html", help="HTML file to write (default report.html)")
    parser.add_argument("--title", default="mbs report", help="page title")
    parser.add_argument(
        "--budgets",
        type=float,
        nargs="+",
        default=None,
        metavar="FRACTION",
        help="budgets of the recommendation, as fractions of dense params (default 0.5 0.25 0.1 0.05)",
    )
    parser.add_argument(
        "--history",
        metavar="DB",
        default=None,
        help="add trend plots with change points from this history database (mbs history add)",
    )
    parser.add_argument(
        "--axis",
        default="bytes",
        help="budget and accuracy-figure axis: bytes (storage incl. indices and metadata; default) or params",
    )


def main(args) -> int:
    from ..report import build_report

    budgets = {"budgets": tuple(args.budgets)} if args.budgets else {}
    html = build_report(args.paths, args.out, title=args.title, history=args.history, axis=args.axis, **budgets)
    print(f"report written to {html.resolve()}")
    return 0
