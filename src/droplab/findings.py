"""What a study's analysis returns and the report renders: :class:`Findings`.

This is the contract between ``droplab.studies`` (which compute findings from stored
results) and ``droplab.report`` (which renders them). Keep it plain data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

__all__ = ["Findings"]


@dataclass
class Findings:
    """The answer of one study, computed from its stored results.

    Attributes:
        study: the study's registry name, e.g. ``"effect"``.
        question: the question, quoted from the research note.
        verdict: one sentence whose words and numbers come from the data (with CIs).
        table: the main result table (one row per cell of the study's grid).
        figures: name -> ``matplotlib.figure.Figure``; the report saves each as PNG.
        method: data, model, training, seeds, and what the confidence intervals are.
        key_number: the headline number of the verdict, e.g. ``"-5.9 pts [-7.0, -4.8]"``.
        extra_tables: further named tables shown below the main one.
        failed: descriptions of failed trials (never hidden by the report).
        references: citations for the section.
    """

    study: str
    question: str
    verdict: str
    table: pd.DataFrame
    figures: dict[str, Any] = field(default_factory=dict)
    method: str = ""
    key_number: str = ""
    extra_tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
