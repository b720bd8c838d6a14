"""Run reports: the report card, per-epoch grids, ROC per label and plots."""

from kerasface.report.card import CARD_KEYS, format_bytes, format_duration, format_params, format_results, run_card
from kerasface.report.writer import load_run_report, write_run_report

__all__ = [
    "CARD_KEYS",
    "format_bytes",
    "format_duration",
    "format_params",
    "format_results",
    "load_run_report",
    "run_card",
    "write_run_report",
]
