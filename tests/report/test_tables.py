"""Numbers as text: single values, p-values, per-column precision of results tables, the
contrasts' digits and sentences, the seeds' ranges."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from droplab.findings import Contrast, Findings
from droplab.report import contrasts
from droplab.report.tables import fmt_p, fmt_value, format_frame
from droplab.report.trials import seeds_text


def test_single_values():
    assert fmt_value(3) == "3" and fmt_value(0.123456) == "0.1235"
    assert fmt_value(float("nan")) == "–" and fmt_value(pd.NA) == "–"
    assert fmt_value(1234567.0) == "1,234,567" and fmt_value(0.0000123) == "1.23e-05"
    assert fmt_value("text") == "text" and fmt_value(True) == "True"


def test_p_values():
    assert [fmt_p(p) for p in (0.0004, 0.0123, 0.0999, 0.1, 0.523, math.nan, None)] == [
        "<0.001",
        "0.012",
        "0.100",
        "0.10",
        "0.52",
        "–",
        "–",
    ]


def test_columns_get_their_own_precision():
    df = pd.DataFrame(
        {
            "rate": [0.0, 0.5, 0.25],  # exact at two decimals: no more
            "test_error": [19.934, 20.51, 15.9],  # ~20: one decimal
            "nll": [0.31234, 0.2999, 0.4],  # ~0.3: three decimals
            "n": [3.0, 3.0, np.nan],  # whole numbers stored as float (NaN for missing)
            "grad_var": [1.2e-6, 3.4e-6, 0.0],  # tiny: scientific
            "p_holm": [0.0001, 0.04, 0.7],
            "seed": [123456, 7, 8],  # never with thousands separators
            "name": ["a", "b", None],
            "flag": [True, False, True],
        }
    ).set_index("rate")
    text, numeric, left_out = format_frame(df)
    assert list(text.columns) == [
        "rate",
        "test_error",
        "nll",
        "n",
        "grad_var",
        "p_holm",
        "seed",
        "name",
        "flag",
    ]
    assert text["rate"].tolist() == ["0.00", "0.50", "0.25"]
    assert text["test_error"].tolist() == ["19.9", "20.5", "15.9"]
    assert text["nll"].tolist() == ["0.312", "0.300", "0.400"]
    assert text["n"].tolist() == ["3", "3", "–"]
    assert text["grad_var"].tolist() == ["1.20e-06", "3.40e-06", "0"]
    assert text["p_holm"].tolist() == ["<0.001", "0.040", "0.70"]
    assert text["seed"].tolist() == ["123456", "7", "8"]
    assert text["name"].tolist() == ["a", "b", "–"] and text["flag"].tolist()[0] == "True"
    assert numeric == [True, True, True, True, True, True, True, False, False] and left_out == 0


def test_a_value_too_small_for_its_column_keeps_two_digits_and_no_minus_zero():
    text, _, _ = format_frame(pd.DataFrame({"x": [12.0, 25.0, 0.004, -0.01, 1234567.0]}))
    assert text["x"].tolist() == ["12", "25", "0.004", "-0.01", "1,234,567"]
    text, _, _ = format_frame(pd.DataFrame({"x": [10.5, 20.25, -0.0001]}))
    assert text["x"].tolist()[2] == "-0.0001"
    text, _, _ = format_frame(pd.DataFrame({"x": [1.26, -0.04]}))
    assert text["x"].tolist() == ["1.26", "-0.04"]


def _c(lo: float, hi: float, call: str = "lowers", unit: str = "points") -> Contrast:
    return Contrast(
        name="c",
        description="a − b",
        primary=True,
        metric="m",
        unit=unit,
        estimate=(lo + hi) / 2,
        ci_low=lo,
        ci_high=hi,
        call=call,
        margin=1.0,
        n_seeds=10,
        p_value=0.002,
        mde=2.5,
    )


def test_contrast_digits_follow_the_interval():
    assert contrasts.short(_c(-7.0, -4.8)) == "-5.9 [-7.0, -4.8] points, lowers"
    assert contrasts.estimate_ci(_c(-0.048, -0.014, unit="nats")) == (
        "-0.031 [-0.048, -0.014] nats"
    )
    assert contrasts.estimate_ci(_c(-40.0, 20.0, unit="")) == "-10.0 [-40.0, +20.0]"
    c = _c(math.nan, math.nan, call="inconclusive")
    assert contrasts.estimate_ci(c) == "n/a [n/a] points"
    details = contrasts.primary_details(_c(-1.0, 1.0, call="inconclusive"))
    assert "10 seeds" in details and "p = 0.002" in details
    assert "margin ±1.0 points" in details and "minimum detectable effect 2.5 points" in details
    assert "minimum detectable" not in contrasts.primary_details(_c(-7.0, -4.8))


def test_answer_falls_back_to_the_first_sentence_of_the_verdict():
    f = Findings(
        study="s",
        question="q?",
        verdict="Error drops 5.9 pts, e.g. on MNIST (Srivastava et al. 2014). Then more.\nAnd more.",
        table=pd.DataFrame(),
        key_number="-5.9 pts",
    )
    assert contrasts.answer_text(f) == (
        "Error drops 5.9 pts, e.g. on MNIST (Srivastava et al. 2014)."
    )
    assert contrasts.verdict_rest(f) == "Then more. And more."
    assert contrasts.headline(f) == "-5.9 pts"
    f.answer, f.contrasts = "It lowers it.", [_c(-7.0, -4.8)]
    assert contrasts.answer_text(f) == "It lowers it." and contrasts.verdict_rest(f) == ""
    assert contrasts.headline(f) == "-5.9 [-7.0, -4.8] points, lowers"


def test_seed_ranges():
    assert seeds_text([3, 0, 1, 2, 7, 9, 10]) == "0–3, 7, 9, 10"
    assert seeds_text([]) == "none" and seeds_text([5]) == "5"
