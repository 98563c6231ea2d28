"""The report leads with the answers: the summary's answer and primary contrast per study,
the order inside a section (HTML and Markdown), the secondary-contrast table, the fallback
for studies not yet on the protocol, and failed trials listed exactly once."""

from __future__ import annotations

import re

import pytest

from .conftest import FINDINGS_FAILED, NOTE, SECONDARY

ANSWER = "Dropout 0.5 lowers test error by 4.0 points on this toy store."
# effect: mean error at rate 0.5 minus rate 0 = -8 * 0.5 = -4.0 points, CI +-1.2
PRIMARY = "-4.0 [-5.2, -2.8] points"


@pytest.fixture(scope="module")
def page(rendered):
    return rendered[1].read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def md(rendered):
    return (rendered[1].parent / "report.md").read_text(encoding="utf-8")


def _section(text: str, name: str) -> str:
    start = text.index(f'id="study-{name}"')
    return text[start : text.index("</section>", start)]


def _md_section(md: str, name: str) -> str:
    start = md.index(f"## {name}\n")
    end = md.find('\n<a id="study-', start)
    return md[start : end if end > 0 else len(md)]


def _in_order(text: str, *needles: str) -> None:
    at = [text.index(n) for n in needles]
    assert at == sorted(at), list(zip(needles, at))


def test_summary_gives_each_answer_and_primary_contrast_with_its_call(page):
    summary = page[page.index('id="summary"') : page.index('id="study-effect"')]
    assert ANSWER in summary
    assert f'{PRIMARY}</span>, <span class="call call-lowers"' in summary
    # the fallback: key number and the first sentence of the verdict only
    assert "1.0 pts [0.5, 1.5]" in summary
    assert "Legacy error is 1.0 points, e.g. about half." in summary
    assert "Second sentence here." not in summary
    # the summary comes before every section
    _in_order(page, 'id="summary"', ANSWER, 'id="study-effect"')


def test_call_badges_are_words_with_a_symbol_and_a_meaning(page):
    for call, symbol in (("lowers", "25BC"), ("raises", "25B2"), ("inconclusive", "?")):
        assert f".call-{call}::before" in page and symbol in page
        assert re.search(rf'<span class="call call-{call}" title="[^"]+">{call}</span>', page)
    assert ".call-inconclusive { color: #3d4450; background: #f0f1f3;" in page  # + dashed


def test_html_section_order_is_answer_first(page):
    sec = _section(page, "effect")
    _in_order(
        sec,
        '<blockquote class="question">',
        ANSWER,
        f'Primary contrast: <span class="key">{PRIMARY}</span>',
        'alt="effect: error_vs_rate"',  # the key figure
        NOTE,
        "Secondary contrasts (3)",
        'alt="effect: error_bars"',
        "<h3>Method</h3>",
        '<details class="raw">',
        "Failed trials (1)",
        "<h3>References</h3>",
    )
    # the raw tables are folded away, every one of them
    details = sec[sec.index('<details class="raw">') : sec.index("</details>")]
    assert "Tables: main table, per seed" in details and details.count("<table") == 2


def test_markdown_mirrors_the_order(md):
    sec = _md_section(md, "effect")
    _in_order(
        sec,
        "> How much exactly",
        f"**Answer:** {ANSWER}",
        f"**Primary contrast:** {PRIMARY}, **lowers** ▼",
        "![error_vs_rate](effect-error-vs-rate.png)",
        f"- {NOTE}",
        "### Secondary contrasts (3)",
        "![error_bars](effect-error-bars.png)",
        "### Method",
        "<details><summary>Tables: main table, per seed</summary>",
        "</details>",
        "### Failed trials (1)",
    )
    _in_order(md, "## Answers", f"| {ANSWER} | {PRIMARY}, **lowers** ▼ |", "## effect\n")


def _rows(table_html: str) -> list[list[str]]:
    body = table_html[table_html.index("<tbody>") :]
    return [
        re.findall(r"<td[^>]*>(.*?)</td>", tr, re.S)
        for tr in re.findall(r"<tr>(.*?)</tr>", body, re.S)
    ]


def test_one_table_row_per_secondary_contrast_with_its_call(page, md):
    sec = _section(page, "effect")
    table = sec[sec.index('<table class="contrasts">') :]
    table = table[: table.index("</table>")]
    assert (
        "<th>Estimate [95% CI, Holm-widened]</th>" in table
        and '<th class="num">p (Holm)</th>' in table
    )
    rows = _rows(table)
    assert [r[0] for r in rows] == [c["description"] for c in SECONDARY]
    for row, c in zip(rows, SECONDARY):
        assert f'class="call call-{c["call"]}"' in row[2] and f">{c['call']}</span>" in row[2]
        assert row[6] == "3"  # seeds
    nll, time, ece = rows
    # digits follow the CI's width (two significant digits of it)
    assert (
        nll[1] == "-0.031 [-0.048, -0.014] nats" and nll[3] == "0.012" and nll[4] == "±0.020 nats"
    )
    assert time[1] == "+0.2 [-0.9, +1.3] s" and time[3] == "0.61"
    assert [nll[5], time[5], ece[5]] == ["", "1.6 s", ""]  # MDE only when inconclusive
    assert ece[1] == "+0.10 [-0.30, +0.50] points" and ece[4] == "±1.00 points"  # margin
    # Markdown: the same rows, the call in words
    lines = [ln for ln in _md_section(md, "effect").splitlines() if ln.startswith("| rate 0.5")]
    assert len(lines) == 3
    assert lines[1] == (
        "| rate 0.5 − rate 0, seconds per epoch | +0.2 [-0.9, +1.3] s | **inconclusive** ? "
        "| 0.61 | ±0.5 s | 1.6 s | 3 |"
    )


def test_a_failed_trial_is_listed_exactly_once(page, md):
    for text in (_section(page, "effect"), _md_section(md, "effect")):
        assert text.count("rate=0.9 seed 0") == 1
        assert text.count("Failed trials (1)") == 1
        assert "from the study's own list" not in text  # Findings.failed is not shown
    assert FINDINGS_FAILED not in page and "study&#x27;s own list" not in page


def test_study_without_contrasts_is_rendered_with_its_verdict(page, md):
    sec = _section(page, "legacy")
    _in_order(
        sec,
        '<p class="answer-text">Legacy error is 1.0 points, e.g. about half.</p>',
        'Key number: <span class="key">1.0 pts [0.5, 1.5]</span>',
        '<p class="verdict-rest">Second sentence here.</p>',
        "<h3>Method</h3>",
        '<details class="raw">',
    )
    assert "Secondary contrasts" not in sec and "Primary contrast" not in sec
    msec = _md_section(md, "legacy")
    _in_order(
        msec,
        "**Answer:** Legacy error is 1.0 points, e.g. about half.",
        "**Key number:** 1.0 pts [0.5, 1.5]",
        "Second sentence here.",
    )
    # a study without called contrasts says so, one on the protocol does not
    assert "not on the protocol" in sec and "not on the protocol" in msec
    assert "not on the protocol" not in _section(page, "effect")
