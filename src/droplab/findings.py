"""What a study's analysis returns and the report renders: :class:`Findings` and
:class:`Contrast`.

This is the contract between ``droplab.studies`` (which compute findings from stored
results) and ``droplab.report`` (which renders them). Keep it plain data: a contrast
serializes to JSON with :meth:`Contrast.to_dict` (``droplab results STUDY --json``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

__all__ = ["AGREEMENTS", "CALLS", "Contrast", "Findings", "agreement"]

#: The only words a comparison may be called by (docs/statistics.md):
#: ``lowers`` / ``raises``: the CI (after Holm for secondary contrasts) excludes 0;
#: ``equivalent``: TOST at the declared margin rejects a difference of at least the margin;
#: ``inconclusive``: neither (the minimum detectable effect says what could have been seen).
CALLS = ("lowers", "raises", "equivalent", "inconclusive")

#: How one contrast's calls in independent replications (root seeds) relate; see
#: :func:`agreement`.
AGREEMENTS = ("agree", "differ", "contradict")


@dataclass(frozen=True)
class Contrast:
    """One comparison ``a - b`` of a study, paired by seed, with its call.

    Attributes:
        name: short identifier, e.g. ``"dropout_vs_none_error"``.
        description: what is compared, in words (``"tuned dropout − tuned none, MNIST-1D
            n=3600"``).
        primary: True for the study's one primary contrast.
        metric: the metric compared (``"test_error"``, ``"test_nll"``, ...).
        unit: the unit of estimate and bounds (``"points"``, ``"nats"``, ``"x"``).
        estimate, ci_low, ci_high: mean of a - b and its interval, in ``unit``.
        level: the study's confidence level (0.95; alpha = 1 - level).
        ci_level: the coverage of ``[ci_low, ci_high]``: ``level`` for the primary
            contrast; for a secondary one widened by its Holm factor (``1 - alpha p_value /
            p_adjusted``), so the interval excludes 0 exactly when the call is lowers/raises
            and lies inside ±margin exactly when it is equivalent.
        call: one of :data:`CALLS`, of ``a`` relative to ``b`` (``"lowers"``: a < b).
        margin: the equivalence margin m (in ``unit``): "equivalent" means within ±m.
        n_seeds: number of complete pairs.
        root_seeds: the ``--seed`` values whose trials went in.
        p_value: two-sided p of "a - b = 0" (paired t), unadjusted.
        p_adjusted: ``p_value`` after Holm over the study's secondary contrasts (equal to
            ``p_value`` for the primary one).
        p_equivalence: p-value of equivalence: twice the TOST p (the larger of the two
            one-sided tests), times the same Holm factor as ``p_adjusted``; below alpha
            exactly when the interval lies inside ±margin.
        mde: minimum detectable effect at 80% power (two-sided, same alpha), in ``unit``.
        method: how the interval was computed (``"paired t over seeds"``).
    """

    name: str
    description: str
    primary: bool
    metric: str
    unit: str
    estimate: float
    ci_low: float
    ci_high: float
    call: str
    margin: float
    n_seeds: int
    root_seeds: tuple[int, ...] = ()
    level: float = 0.95
    ci_level: float = 0.95
    p_value: float = math.nan
    p_adjusted: float = math.nan
    p_equivalence: float = math.nan
    mde: float = math.nan
    method: str = "paired t over seeds"

    def __post_init__(self) -> None:
        if self.call not in CALLS:
            raise ValueError(f"call must be one of {CALLS}, got {self.call!r}")
        object.__setattr__(self, "root_seeds", tuple(int(s) for s in self.root_seeds))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (NaN becomes None)."""
        out = asdict(self)
        out["root_seeds"] = list(self.root_seeds)
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in out.items()
        }

    def digits(self) -> int:
        """Decimals to show: the interval's width to two significant digits, 1..4."""
        width = abs(self.ci_high - self.ci_low)
        if not math.isfinite(width) or width == 0:
            scale = abs(self.estimate) if math.isfinite(self.estimate) and self.estimate else 1.0
            width = scale
        return max(1, min(4, 1 - math.floor(math.log10(width))))

    def short(self, digits: int | None = None) -> str:
        """``"-5.9 [-7.0, -4.8] points, lowers"``: estimate [CI] unit, call, at ``digits``
        decimals (default :meth:`digits`, so an NLL of 0.004 does not print as +0.0)."""
        d = self.digits() if digits is None else digits
        if math.isnan(self.ci_low) or math.isnan(self.ci_high):
            ci = "[n/a]"
        else:
            ci = f"[{self.ci_low:+.{d}f}, {self.ci_high:+.{d}f}]"
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.estimate:+.{d}f} {ci}{unit}, {self.call}"


@dataclass
class Findings:
    """The answer of one study, computed from its stored results.

    Attributes:
        study: the study's registry name, e.g. ``"effect"``.
        question: the question, quoted from the research note.
        verdict: the study's verdict, whose words and numbers come from the data (with
            CIs); for studies on the protocol, the answer followed by its contrasts.
        table: the main result table (one row per cell of the study's grid).
        figures: name -> ``matplotlib.figure.Figure``; the report saves each as PNG. The
            first one is the key figure.
        method: data, model, training, seeds, and what the confidence intervals are.
        key_number: the headline number of the verdict, e.g. ``"-5.9 pts [-7.0, -4.8]"``.
        extra_tables: further named tables shown below the main one.
        failed: descriptions of failed trials (the report lists failed trials from the
            store itself; this is kept for the command line).
        references: citations for the section.
        answer: one sentence (at most ~30 words) that answers the question, written from
            the data; empty for studies not yet on the protocol.
        contrasts: the study's contrasts, the primary one first (empty for studies not yet
            on the protocol).
        notes: warnings the reader must see (e.g. training caps hit by > 10% of members).
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
    answer: str = ""
    contrasts: list[Contrast] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def primary(self) -> Contrast | None:
        """The primary contrast, or None (a study not yet on the protocol)."""
        return next((c for c in self.contrasts if c.primary), None)

    def to_dict(self) -> dict[str, Any]:
        """The verdict as plain JSON values: study, question, answer, contrasts, notes."""
        return {
            "study": self.study,
            "question": self.question,
            "answer": self.answer or self.verdict,
            "contrasts": [c.to_dict() for c in self.contrasts],
            "notes": list(self.notes),
        }


def agreement(replications: Sequence[Contrast]) -> str:
    """How the calls of one contrast in independent replications (root seeds) relate.

    - ``"contradict"``: one replication asserts what another's interval rules out:
      ``lowers`` beside ``raises``, or ``equivalent`` (interval inside ±margin) beside a
      ``lowers``/``raises`` whose interval lies wholly beyond the margin;
    - ``"agree"``: every replication makes the same call;
    - ``"differ"``: otherwise, e.g. ``lowers`` beside ``inconclusive`` (one replication
      could see what the other could not: a difference of power, not of direction).

    Raises:
        ValueError: fewer than two replications.
    """
    if len(replications) < 2:
        raise ValueError(f"agreement needs at least 2 replications, got {len(replications)}")
    calls = {c.call for c in replications}
    if {"lowers", "raises"} <= calls:
        return "contradict"
    if "equivalent" in calls and any(
        (c.call == "lowers" and c.ci_high < -c.margin)
        or (c.call == "raises" and c.ci_low > c.margin)
        for c in replications
    ):
        return "contradict"
    return "agree" if len(calls) == 1 else "differ"
