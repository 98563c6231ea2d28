"""A study's figures as PNG files: :func:`collect` turns ``Findings.figures`` (matplotlib
figures, or PNG bytes) into :class:`Figure` records with unique file names, keeping the
study's order (the first one is the key figure) and noting each figure that fails instead
of raising. :func:`discard` frees figures that are not drawn (the findings file)."""

from __future__ import annotations

import io
import re
import sys
from dataclasses import dataclass
from typing import Any

__all__ = ["Figure", "collect", "discard", "png", "slug", "unique"]

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass
class Figure:
    """One drawn figure: its name in ``Findings.figures``, its file name, its PNG bytes."""

    name: str
    filename: str
    png: bytes


def slug(text: str) -> str:
    """Lower-case letters, digits and dashes: ``"Error vs rate"`` -> ``"error-vs-rate"``."""
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "x"


def unique(base: str, taken: set[str]) -> str:
    """``base``, or ``base-2``, ``base-3``, ... : the first not in ``taken`` (then added)."""
    name, i = base, 2
    while name in taken:
        name, i = f"{base}-{i}", i + 1
    taken.add(name)
    return name


def _close(fig: Any) -> None:
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None and hasattr(fig, "savefig"):
        pyplot.close(fig)  # free pyplot-managed figures; harmless for plain Figures


def png(fig: Any) -> bytes:
    """PNG bytes of a matplotlib figure (150 dpi), or PNG bytes given directly."""
    if isinstance(fig, bytes | bytearray):
        if not bytes(fig).startswith(_PNG_MAGIC):
            raise ValueError("figure bytes are not a PNG image")
        return bytes(fig)
    if not hasattr(fig, "savefig"):
        raise TypeError(f"expected a matplotlib Figure or PNG bytes, got {type(fig).__name__}")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=150, bbox_inches="tight")
    _close(fig)
    return buf.getvalue()


def collect(
    study: str, figures: dict[str, Any], filenames: set[str]
) -> tuple[list[Figure], list[str]]:
    """(drawn figures in the study's order, "name: error" per figure that failed).

    File names are ``<study>-<figure>.png``, made unique against ``filenames``."""
    drawn, errors = [], []
    for name, fig in (figures or {}).items():
        try:
            data = png(fig)
        except Exception as e:
            errors.append(f"{name}: {type(e).__name__}: {e}")
            continue
        filename = unique(f"{slug(study)}-{slug(str(name))}", filenames) + ".png"
        drawn.append(Figure(str(name), filename, data))
    return drawn, errors


def discard(figures: dict[str, Any]) -> None:
    """Free figures that will not be drawn."""
    for fig in (figures or {}).values():
        _close(fig)
