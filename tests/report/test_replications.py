"""How the primary calls of independent replications (root seeds) relate:
:func:`droplab.findings.agreement`."""

from __future__ import annotations

import pytest

from droplab.findings import AGREEMENTS, Contrast, agreement


def _c(call: str, lo: float, hi: float, margin: float = 1.0) -> Contrast:
    return Contrast(
        name="x",
        description="a − b",
        primary=True,
        metric="test_error",
        unit="points",
        estimate=(lo + hi) / 2,
        ci_low=lo,
        ci_high=hi,
        call=call,
        margin=margin,
        n_seeds=10,
    )


@pytest.mark.parametrize(
    ("calls", "expected"),
    [
        ([_c("lowers", -3, -1), _c("lowers", -4, -0.5)], "agree"),
        ([_c("inconclusive", -3, 1), _c("inconclusive", -1, 2)], "agree"),
        ([_c("lowers", -3, -1), _c("inconclusive", -2, 0.5)], "differ"),
        ([_c("equivalent", -0.5, 0.5), _c("lowers", -0.9, -0.1)], "differ"),  # both can hold
        ([_c("lowers", -3, -1), _c("raises", 0.2, 2)], "contradict"),
        ([_c("equivalent", -0.5, 0.5), _c("lowers", -3, -1.5)], "contradict"),
        ([_c("raises", 1.2, 3), _c("equivalent", -0.2, 0.9)], "contradict"),
        ([_c("lowers", -3, -1), _c("lowers", -2, -1), _c("raises", 0.1, 1)], "contradict"),
    ],
)
def test_agreement(calls, expected):
    assert expected in AGREEMENTS
    assert agreement(calls) == expected
    assert agreement(list(reversed(calls))) == expected  # order does not matter


def test_agreement_needs_two_replications():
    with pytest.raises(ValueError, match="at least 2 replications, got 1"):
        agreement([_c("lowers", -3, -1)])
