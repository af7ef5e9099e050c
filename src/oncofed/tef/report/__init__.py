"""Evaluation reports (HTML with inline SVG figures, PDF through headless Chromium) and the
per-benchmark leaderboard the hub serves."""

from __future__ import annotations

from oncofed.tef.report.html import render_leaderboard, render_report
from oncofed.tef.report.model import (
    LeaderboardEntry,
    ReportError,
    ReportInput,
    report_input,
)
from oncofed.tef.report.pdf import export_pdf

__all__ = [
    "LeaderboardEntry",
    "ReportError",
    "ReportInput",
    "export_pdf",
    "render_leaderboard",
    "render_report",
    "report_input",
]
