"""The HTML analysis report."""

from pexkit.report.html import render_report, tradeoff_sentences, write_report

__all__ = ["render_report", "tradeoff_sentences", "write_report"]
