"""A study's answer and contrasts as text, shared by the HTML page, ``report.md`` and the
findings file: the answer sentence (with the fallback for studies not yet on the
protocol), the headline number, the primary contrast's line and the rows of the
secondary-contrast table.

Digits follow the interval: enough decimals that the CI's width shows two significant
digits (at least one decimal, at most four), so points read ``-5.9 [-7.0,
-4.8]`` and nats ``-0.031 [-0.048, -0.014]``.
"""

from __future__ import annotations

import math
import re
from typing import Any

from droplab.findings import CALLS, Contrast, Findings, agreement
from droplab.report.tables import fmt_p

__all__ = [
    "AGREEMENT_MEANING",
    "CALL_MEANING",
    "CALL_SYMBOL",
    "COLUMNS",
    "OFF_PROTOCOL",
    "answer_text",
    "digits",
    "estimate_ci",
    "first_sentence",
    "headline",
    "primary_details",
    "replication_text",
    "rows",
    "short",
    "verdict_rest",
]

#: A shape per call, so the call never rests on colour alone.
CALL_SYMBOL = {"lowers": "▼", "raises": "▲", "equivalent": "=", "inconclusive": "?"}
#: What each call means (the badge's tooltip and the legend).
CALL_MEANING = {
    "lowers": "the 95% CI (Holm-widened for secondary contrasts) lies below 0",
    "raises": "the 95% CI (Holm-widened for secondary contrasts) lies above 0",
    "equivalent": "the 95% CI (Holm-widened for secondary contrasts) lies inside the "
    "equivalence margin",
    "inconclusive": "neither a difference nor equivalence is shown; see the MDE",
}
assert set(CALL_SYMBOL) == set(CALLS) == set(CALL_MEANING)

#: Header of the secondary-contrast table; :func:`rows` gives the cells in this order.
COLUMNS = (
    "Contrast",
    "Estimate [95% CI, Holm-widened]",
    "Call",
    "p (Holm)",
    "Equivalence margin",
    "MDE (if inconclusive)",
    "Seeds",
)

# A sentence ends at . ! ? followed by space and a capital, a digit-free opener or a quote
# (so "5.9", "e.g. the" and "et al. 2014" do not end one).
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'“(])")


def digits(c: Contrast) -> int:
    """Decimals for ``c``: the CI's width shown to two significant digits, 1..4."""
    return c.digits()


def _num(x: float, d: int) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:+.{d}f}"


def estimate_ci(c: Contrast) -> str:
    """``"-5.9 [-7.0, -4.8] points"``: estimate, interval and unit (no call)."""
    d = digits(c)
    if math.isfinite(c.ci_low) and math.isfinite(c.ci_high):
        ci = f"[{c.ci_low:+.{d}f}, {c.ci_high:+.{d}f}]"
    else:
        ci = "[n/a]"
    unit = f" {c.unit}" if c.unit else ""
    return f"{_num(c.estimate, d)} {ci}{unit}"


def short(c: Contrast) -> str:
    """``Contrast.short`` at the contrast's own digits: ``"-5.9 [-7.0, -4.8] points, lowers"``."""
    return c.short(digits(c))


def _amount(x: float, c: Contrast, sign: str = "") -> str:
    if not math.isfinite(x):
        return "–"
    unit = f" {c.unit}" if c.unit else ""
    return f"{sign}{abs(x):.{digits(c)}f}{unit}"


def primary_details(c: Contrast) -> str:
    """The line under the primary contrast: what is compared, seeds, p, margin, MDE."""
    seeds = f"{c.n_seeds} seed{'s' * (c.n_seeds != 1)}"
    parts = [c.description, f"{c.method}, {seeds}", f"p = {fmt_p(c.p_value)}"]
    parts.append(f"equivalence margin {_amount(c.margin, c, '±')}")
    if c.call == "inconclusive":
        parts.append(f"minimum detectable effect {_amount(c.mde, c)}")
    return " · ".join(p for p in parts if p)


def rows(contrasts: list[Contrast]) -> list[tuple[str, ...]]:
    """One row of :data:`COLUMNS` per contrast (the call as its word)."""
    out = []
    for c in contrasts:
        mde = _amount(c.mde, c) if c.call == "inconclusive" else ""
        out.append(
            (
                c.description,
                estimate_ci(c),
                c.call,
                fmt_p(c.p_adjusted),
                _amount(c.margin, c, "±"),
                mde,
                str(c.n_seeds),
            )
        )
    return out


def first_sentence(text: str) -> str:
    """The first sentence of ``text`` (all of it when it has one)."""
    text = " ".join(str(text).split())
    return _SENTENCE_END.split(text, maxsplit=1)[0] if text else ""


#: shown beside the key number of a study off the protocol (e.g. a plug-in study without
#: contrasts)
OFF_PROTOCOL = "not on the protocol: no called contrast"


#: what each :data:`droplab.findings.AGREEMENTS` value says about replications
AGREEMENT_MEANING = {
    "agree": "every root seed makes the same call",
    "differ": "the calls differ but none rules out another's (a difference of power)",
    "contradict": "one root seed's interval rules out another's call",
}


def replication_text(s: Any) -> str:
    """``"2 root seeds: agree (every root seed makes the same call)"`` for a report
    section with per-root-seed primary contrasts (``s.replications``)."""
    n = len(s.replications)
    if n < 2:
        return f"{n} root seed{'s' * (n != 1)} analysable"
    word = agreement(s.replications)
    return f"{n} root seeds: {word}, {AGREEMENT_MEANING[word]}"


def answer_text(f: Findings) -> str:
    """The one sentence that answers the question: ``Findings.answer``, or for a study not
    yet on the protocol the first sentence of its verdict."""
    return str(f.answer).strip() or first_sentence(f.verdict)


def verdict_rest(f: Findings) -> str:
    """What a study without ``answer`` says after its first sentence (shown below the
    answer so nothing of its verdict is lost); "" for studies on the protocol."""
    if str(f.answer).strip():
        return ""
    text = " ".join(str(f.verdict).split())
    parts = _SENTENCE_END.split(text, maxsplit=1)
    return parts[1] if len(parts) > 1 else ""


def headline(f: Findings) -> str:
    """The summary's number: the primary contrast's short form, else the key number."""
    p = f.primary
    return short(p) if p is not None else str(f.key_number or "")
