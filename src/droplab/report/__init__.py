"""The report: renders the store's results, via each study's ``analyze``, as one HTML page
(self-contained) and one Markdown file with PNG figures beside it.

``droplab.report.style`` is the shared figure style every study uses for its figures.
"""

from __future__ import annotations

from droplab.report import style

__all__ = ["style"]
