"""The report: renders the store's results, via each study's ``analyze``, as one HTML page
(self-contained) and one Markdown file with PNG figures beside it.

    >>> from droplab.report import render
    >>> render("droplab-results/results.db", "droplab-results/report")  # doctest: +SKIP
    PosixPath('/.../droplab-results/report/index.html')

``droplab.report.findings_md.write_findings`` writes a Markdown findings file from a store.
``droplab.report.style`` is the shared figure style every study uses for its figures;
``droplab.report.references`` the bibliography studies cite from.
"""

from __future__ import annotations

from droplab.report import references, style
from droplab.report.findings_md import write_findings
from droplab.report.render import render

__all__ = ["references", "render", "style", "write_findings"]
