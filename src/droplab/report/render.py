"""Render the report from the store alone: ``index.html``, ``report.md`` and PNG figures.

:func:`render` is the public entry point and the one place that turns "which studies"
into Study objects (the registry by default, or names looked up there); everything below
it (:mod:`~droplab.report.sections`, :mod:`~droplab.report.html`,
:mod:`~droplab.report.markdown`) takes the studies as given.

Nothing here trains or fetches anything: re-rendering needs only the store.
"""

from __future__ import annotations

import datetime as _dt
import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from droplab.report import html, markdown, sections
from droplab.report.trials import DONE_STATUSES, FAILED_STATUSES

__all__ = ["DONE_STATUSES", "FAILED_STATUSES", "render", "resolve_studies"]


def resolve_studies(studies: Sequence[Any] | None) -> tuple[list[Any], dict[str, str]]:
    """(Study objects, unavailable modules) for ``studies``.

    ``None`` means every study of ``droplab.studies.REGISTRY`` in registry order, plus the
    registered modules that failed to import (shown, not hidden); names are looked up in
    the registry; Study objects (anything with ``name`` and ``analyze``) are taken as they
    are, without importing ``droplab.studies``.
    """
    if studies is None:
        registry = importlib.import_module("droplab.studies")
        return list(registry.REGISTRY.values()), dict(getattr(registry, "UNAVAILABLE", {}))
    if isinstance(studies, str):
        raise TypeError(
            f"studies must be a list of names or Study objects, got the string {studies!r}"
        )
    chosen = []
    for s in studies:
        if isinstance(s, str):
            chosen.append(importlib.import_module("droplab.studies").get(s))
        elif hasattr(s, "name") and hasattr(s, "analyze"):
            chosen.append(s)
        else:
            raise TypeError(f"studies entries must be names or Study objects, got {s!r}")
    return chosen, {}


def _version() -> str:
    try:
        import droplab

        return str(droplab.__version__)
    except Exception:
        return "?"


def render(
    store_path: str | Path,
    out_dir: str | Path,
    studies: Sequence[Any] | None = None,
    *,
    preset: str | None = None,
) -> Path:
    """Render the report of ``studies`` from the store at ``store_path`` into ``out_dir``.

    Args:
        store_path: the SQLite results store. A missing file renders every study as
            "not run" (nothing is created).
        out_dir: the output folder, created if needed. Receives ``index.html`` (one
            self-contained file: figures as base64 PNG data URIs, CSS inline, nothing
            fetched), ``report.md`` and one ``<study>-<figure>.png`` per figure.
        studies: ``Study`` objects (or registry names), in page order; ``None`` means
            every study of ``droplab.studies.REGISTRY`` in registry order.
        preset: report this preset's trials; ``None``: per study, the largest preset with
            finished trials (full > standard > quick). Presets never mix in one analysis.

    Returns:
        The absolute path of ``index.html``.

    Each study's ``analyze`` gets the store frame's rows of the chosen preset (every
    status, like ``Study.findings``); it is not called when none of them is finished.
    """
    if not isinstance(store_path, str | Path):
        raise TypeError(f"store_path must be a str or Path, got {type(store_path).__name__}")
    if not isinstance(out_dir, str | Path):
        raise TypeError(f"out_dir must be a str or Path, got {type(out_dir).__name__}")
    store_path = Path(store_path)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir={str(out)!r} exists and is not a directory")
    chosen, unavailable = resolve_studies(studies)
    out.mkdir(parents=True, exist_ok=True)

    found = sections.collect(store_path, chosen, preset=preset, unavailable=unavailable)
    for section in found:
        for fig in section.figures:
            (out / fig.filename).write_bytes(fig.png)
    meta = {
        "store": str(store_path),
        "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "version": _version(),
    }
    (out / "report.md").write_text(markdown.report(found, meta), encoding="utf-8")
    index = out / "index.html"
    index.write_text(html.page(found, meta), encoding="utf-8")
    return index.resolve()
