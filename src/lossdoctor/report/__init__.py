"""Renderings of diagnoses: terminal text, JSON, and a self-contained HTML report.

The HTML names are imported lazily so `import lossdoctor.report.text` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lossdoctor.report.html import Report, render_html, write_html_report

__all__ = ["Report", "render_html", "write_html_report"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from lossdoctor.report import html

        return getattr(html, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
