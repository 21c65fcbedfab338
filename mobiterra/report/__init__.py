"""The planner's outputs of a month: maps/, exports/ and report/index.html."""

from mobiterra.report.build import build_report

__all__ = ["build_report"]
