"""The studies: one module per question of the research note, and their registry.

    >>> from droplab import studies
    >>> studies.get("effect").question                      # doctest: +SKIP

To add a study: write ``src/droplab/studies/<module>.py`` ending with ``STUDY = Study(...)``
(see :mod:`droplab.studies.base`) and put ``<module>`` in :data:`STUDY_MODULES` below, in
the order the report should show it. A listed module that does not exist yet is skipped;
one that exists but fails to import is kept out of :data:`REGISTRY` and listed in
:data:`UNAVAILABLE` with its error (``droplab list`` shows it, ``get`` raises it).

Your own studies, outside droplab: list importable modules (each with ``STUDY``) in the
environment variable ``DROPLAB_STUDIES`` (comma-separated, e.g. ``mylab.study_a``); they
are registered after the built-in ones.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

from droplab.studies import stats
from droplab.studies.base import PRESETS, Study, Trial, select_preset

__all__ = [
    "PRESETS",
    "REGISTRY",
    "STUDY_MODULES",
    "UNAVAILABLE",
    "Study",
    "Trial",
    "get",
    "select_preset",
    "stats",
]

#: Study modules in report order. Append yours.
STUDY_MODULES: list[str] = [
    "effect",
    "rate",
    "ensemble",
    "explicit",
    "gaussian",
    "fixed_count",
    "conv",
    "slack",
    "uncertainty",
]

#: name -> Study, in report order.
REGISTRY: dict[str, Study] = {}
#: module -> why it could not be imported.
UNAVAILABLE: dict[str, str] = {}


def _load() -> None:
    extra = [m.strip() for m in os.environ.get("DROPLAB_STUDIES", "").split(",") if m.strip()]
    if extra and str(Path.cwd()) not in sys.path:
        sys.path.append(str(Path.cwd()))
    for module_name in [*STUDY_MODULES, *extra]:
        qualified = module_name if module_name in extra else f"droplab.studies.{module_name}"
        try:
            module = importlib.import_module(qualified)
        except ModuleNotFoundError as e:
            if e.name == qualified and module_name not in extra:
                continue  # not written yet
            UNAVAILABLE[module_name] = f"{type(e).__name__}: {e}"
            continue
        except Exception as e:  # a broken study must not take the others down
            UNAVAILABLE[module_name] = f"{type(e).__name__}: {e}"
            continue
        study = getattr(module, "STUDY", None)
        if not isinstance(study, Study):
            UNAVAILABLE[module_name] = f"{qualified} defines no STUDY = Study(...)"
            continue
        if study.name in REGISTRY:
            UNAVAILABLE[module_name] = f"duplicate study name {study.name!r}"
            continue
        REGISTRY[study.name] = study


def get(name: str) -> Study:
    """The registered study called ``name``.

    Raises:
        ValueError: unknown name (the message lists the valid ones) or a study whose module
            failed to import (the message gives the import error).
    """
    if name in REGISTRY:
        return REGISTRY[name]
    broken = UNAVAILABLE.get(name) or UNAVAILABLE.get(name.replace("-", "_"))
    if broken:
        raise ValueError(f"study {name!r} is unavailable: {broken}")
    raise ValueError(f"unknown study {name!r}; valid studies: {', '.join(REGISTRY) or '(none)'}")


_load()
