"""Reports: matplotlib figures (one function per figure) and a self-contained HTML page."""

from leafscope.report.explorer import write_explorer
from leafscope.report.html import Report, Section

__all__ = ["Report", "Section", "write_explorer"]
