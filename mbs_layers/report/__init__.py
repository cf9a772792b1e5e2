"""The HTML efficiency report: ``build_report(paths, out_html)`` (see docs/reports.md)."""

from .build import build_report

__all__ = ["build_report"]
