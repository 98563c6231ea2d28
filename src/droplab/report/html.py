"""``index.html``: one self-contained page (CSS inline, figures as base64 PNG data URIs,
nothing fetched) that leads with the answers.

Order: summary (per study the answer and the primary contrast with its call), then one
section per study: question, answer, primary contrast, key figure, notes, secondary
contrasts, further figures, method, raw tables (folded), failed trials, references; then
the bibliography.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from typing import Any

import pandas as pd

from droplab.findings import CALLS
from droplab.report import contrasts
from droplab.report.css import CSS
from droplab.report.figures import Figure, slug
from droplab.report.references import BIBLIOGRAPHY, resolve
from droplab.report.sections import Section, unresolved_references
from droplab.report.tables import format_frame
from droplab.report.trials import seeds_text

__all__ = ["page"]


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _rich(text: str) -> str:
    """Escaped text with blank-line paragraphs and `inline code`."""
    paras = [p.strip() for p in re.split(r"\n\s*\n", str(text)) if p.strip()]
    out = []
    for p in paras:
        body = re.sub(r"`([^`\n]+)`", r"<code>\1</code>", _e(p)).replace("\n", "<br>\n")
        out.append(f"<p>{body}</p>")
    return "\n".join(out)


def _table(df: pd.DataFrame) -> str:
    d, numeric, left_out = format_frame(df)
    if d.shape[1] == 0:
        return "<p class='notrun'>(empty table)</p>"
    cls = ['class="num"' if num else "" for num in numeric]
    head = "".join(f"<th {c}>{_e(name)}</th>" for c, name in zip(cls, d.columns))
    body = "\n".join(
        "<tr>" + "".join(f"<td {c}>{_e(v)}</td>" for c, v in zip(cls, row)) + "</tr>"
        for row in d.itertuples(index=False)
    )
    note = f'<p class="notrun">({left_out} more rows not shown)</p>' if left_out else ""
    return (
        f'<div class="table-wrap"><table class="data"><thead><tr>{head}</tr></thead>'
        f"<tbody>\n{body}\n</tbody></table></div>{note}"
    )


def call_badge(call: str) -> str:
    """The call as a badge: its word, a symbol (CSS) and a tooltip saying what it means."""
    return (
        f'<span class="call call-{_e(call)}" title="{_e(contrasts.CALL_MEANING.get(call, ""))}">'
        f"{_e(call)}</span>"
    )


def _primary(s: Section) -> str:
    """The primary contrast's line (estimate [CI] unit, call) and its details, or the key
    number of a study without contrasts."""
    f = s.findings
    c = f.primary if f is not None else None
    if c is not None:
        return (
            f'<p class="primary">Primary contrast: <span class="key">'
            f"{_e(contrasts.estimate_ci(c))}</span>, {call_badge(c.call)}</p>"
            f'<p class="primary-detail">{_e(contrasts.primary_details(c))}</p>'
        )
    if f is not None and f.key_number:
        return (
            f'<p class="primary">Key number: <span class="key">{_e(f.key_number)}</span> '
            f'<span class="off-protocol">({_e(contrasts.OFF_PROTOCOL)})</span></p>'
        )
    return ""


def _replications(s: Section) -> str:
    """The primary contrast per root seed and how the calls relate ("" for one seed)."""
    if not s.replications and not s.replication_errors:
        return ""
    rows = "".join(
        f'<tr><td class="num">{_e(seeds_text(list(c.root_seeds)))}</td>'
        f'<td class="num">{c.n_seeds}</td><td class="est">{_e(contrasts.estimate_ci(c))}</td>'
        f"<td>{call_badge(c.call)}</td></tr>"
        for c in s.replications
    )
    errors = "".join(f"<li>{_e(e)}</li>" for e in s.replication_errors)
    return (
        f'<p class="replication">Replications of the primary contrast: '
        f"{_e(contrasts.replication_text(s))}</p>"
        + (
            '<div class="table-wrap"><table class="contrasts"><thead><tr>'
            '<th class="num">Root seed</th><th class="num">Replicates</th>'
            "<th>Primary contrast [95% CI]</th><th>Call</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></div>"
            if rows
            else ""
        )
        + (f"<ul>{errors}</ul>" if errors else "")
    )


def _contrast_table(rows: list[tuple[str, ...]]) -> str:
    numeric = {3, 6}
    num = ' class="num"'
    head = "".join(
        f"<th{num if j in numeric else ''}>{_e(h)}</th>" for j, h in enumerate(contrasts.COLUMNS)
    )
    body = []
    for row in rows:
        cells = []
        for j, v in enumerate(row):
            if j == 2:
                cells.append(f"<td>{call_badge(v)}</td>")
            elif j == 1:
                cells.append(f'<td class="est">{_e(v)}</td>')
            else:
                cells.append(f"<td{num if j in numeric else ''}>{_e(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        '<div class="table-wrap"><table class="contrasts"><thead><tr>'
        f"{head}</tr></thead><tbody>\n" + "\n".join(body) + "\n</tbody></table></div>"
    )


def _figure(s: Section, fig: Figure, cls: str = "") -> str:
    data = base64.b64encode(fig.png).decode("ascii")
    attr = f' class="{cls}"' if cls else ""
    return (
        f'<figure{attr}><img src="data:image/png;base64,{data}" '
        f'alt="{_e(s.name)}: {_e(fig.name)}" data-figure="{_e(fig.name)}">'
        f"<figcaption>{_e(fig.name.replace('_', ' '))}</figcaption></figure>"
    )


def _notes(s: Section) -> list[str]:
    notes = [s.partial(), s.mixed, *(str(n) for n in (s.findings.notes if s.findings else []))]
    return [n for n in notes if n]


def _findings(s: Section) -> list[str]:
    f = s.findings
    h = ['<div class="answer">', f'<p class="answer-text">{_e(contrasts.answer_text(f))}</p>']
    h += [_primary(s), _replications(s), "</div>"]
    rest = contrasts.verdict_rest(f)
    if rest:
        h.append(f'<p class="verdict-rest">{_e(rest)}</p>')
    if s.key_figure is not None:
        h.append(_figure(s, s.key_figure, "key-figure"))
    for err in s.figure_errors:
        h.append(f'<p class="failed-list">Figure failed: {_e(err)}</p>')
    notes = _notes(s)
    if notes:
        items = "".join(f"<li>{_e(n)}</li>" for n in notes)
        h.append(f'<div class="notes" role="note"><strong>Notes</strong><ul>{items}</ul></div>')
    secondary = [c for c in f.contrasts if c is not f.primary]
    if secondary:
        h.append(f"<h3>Secondary contrasts ({len(secondary)})</h3>")
        h.append(_contrast_table(contrasts.rows(secondary)))
    if s.more_figures:
        h.append("<h3>More figures</h3>")
        h.append('<div class="figs">' + "".join(_figure(s, x) for x in s.more_figures) + "</div>")
    if f.method:
        h += ["<h3>Method</h3>", _rich(f.method)]
    if s.provenance:
        h.append(f'<p class="provenance">{_e(s.provenance)}</p>')
    tables = _raw_tables(f)
    if tables:
        names = ", ".join(name for name, _ in tables)
        h.append(f'<details class="raw"><summary>Tables: {_e(names)}</summary>')
        for name, t in tables:
            h += [f"<h3>{_e(name)}</h3>", _table(t)]
        h.append("</details>")
    return h


def _raw_tables(f: Any) -> list[tuple[str, pd.DataFrame]]:
    tables = [("main table", f.table)] if isinstance(f.table, pd.DataFrame) else []
    tables += [
        (str(n), t) for n, t in (f.extra_tables or {}).items() if isinstance(t, pd.DataFrame)
    ]
    return tables


def _state(s: Section) -> str:
    return f'<span class="badge {slug(s.state)}">{_e(s.state_text)}</span>'


def _ref_item(r: str) -> str:
    key = resolve(r)
    if key is None:
        return f"<li>{_e(r)}</li>"
    ref = BIBLIOGRAPHY[key]
    return f'<li><a href="#ref-{_e(key)}">{_e(ref.short)}</a>. {_e(ref.citation)}</li>'


def _section(s: Section) -> str:
    badge = _state(s)
    h = [f'<section class="card study" id="{_e(s.anchor)}" data-study="{_e(s.name)}">']
    h.append(
        f'<div class="section-head"><h2>{_e(s.name)}</h2>{badge}'
        f'<span class="counts">{_e(s.counts())}</span></div>'
    )
    if s.question:
        h.append(f'<blockquote class="question">{_e(s.question)}</blockquote>')
    if s.findings is not None:
        h += _findings(s)
    elif s.state in ("analysis error", "unavailable"):
        h.append("<p><strong>The analysis failed:</strong></p>")
        h.append(f'<pre class="error">{_e(s.error.rstrip())}</pre>')
    else:
        lead, rest = s.not_run()
        h.append(f'<p class="notrun"><strong>{_e(lead)}</strong> {_e(rest)}</p>')
        h.append(f'<pre class="command">{_e(s.command)}</pre>')
        if s.mixed:
            h.append(f'<div class="notes" role="note">{_e(s.mixed)}</div>')
    if s.failed:
        h.append(f"<h3>Failed trials ({len(s.failed)})</h3>")
        h.append('<ul class="failed-list">' + "".join(f"<li>{_e(t)}</li>" for t in s.failed))
        h.append("</ul>")
    if s.references:
        h.append("<h3>References</h3>")
        h.append('<ul class="refs">' + "".join(_ref_item(r) for r in s.references) + "</ul>")
    h.append("</section>")
    return "\n".join(h)


def _summary_row(s: Section) -> str:
    f = s.findings
    study = f'<td><a href="#{_e(s.anchor)}">{_e(s.name)}</a><br>{_state(s)}</td>'
    if f is None:
        answer = _e(s.status_line())
        if s.state in ("not run", "failed"):
            answer += f" <code>{_e(s.command)}</code>"
        number = ""
    else:
        answer = _e(contrasts.answer_text(f))
        c = f.primary
        if c is not None:
            number = (
                f'<span class="key">{_e(contrasts.estimate_ci(c))}</span>, {call_badge(c.call)}'
            )
        else:
            number = (
                f'<span class="key">{_e(f.key_number or "")}</span>'
                f'<br><span class="off-protocol">({_e(contrasts.OFF_PROTOCOL)})</span>'
            )
    return (
        f'<tr>{study}<td class="q">{_e(s.question)}</td><td class="a">{answer}</td>'
        f"<td>{number}</td></tr>"
    )


def page(sections: Sequence[Section], meta: dict[str, str]) -> str:
    """The whole ``index.html``; ``meta`` has ``store``, ``generated`` and ``version``."""
    rows = [_summary_row(s) for s in sections] or [
        '<tr><td colspan="4" class="notrun">No studies registered.</td></tr>'
    ]
    legend = " · ".join(f"{call_badge(c)}: {_e(contrasts.CALL_MEANING[c])}" for c in CALLS)
    bib = []
    for k, ref in BIBLIOGRAPHY.items():
        link = f' <a href="{_e(ref.url)}">{_e(ref.url)}</a>' if ref.url else ""
        bib.append(f'<li id="ref-{_e(k)}">{_e(ref.citation)}{link}</li>')
    bib += [f"<li>{_e(t)}</li>" for t in unresolved_references(sections)]
    body = "\n".join(
        [
            "<header><h1>droplab report: what dropout does</h1>",
            f'<p class="meta">Store <code>{_e(meta["store"])}</code> · generated '
            f"{_e(meta['generated'])} · droplab {_e(meta['version'])}</p></header>",
            '<section id="summary"><h2>Answers</h2>',
            '<div class="table-wrap"><table class="summary"><thead><tr><th>Study</th>'
            "<th>Question</th><th>Answer</th><th>Primary contrast [95% CI], call</th></tr>"
            "</thead><tbody>",
            *rows,
            "</tbody></table></div>",
            f'<p class="legend">Calls: {legend}.</p></section>',
            *(_section(s) for s in sections),
            '<section id="bibliography"><h2>Bibliography</h2><ol class="bib">',
            *bib,
            "</ol></section>",
            "<footer>Rendered from the store alone by <code>droplab report</code>; "
            "no training was run to make this page.</footer>",
        ]
    )
    return (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
        "<title>droplab report</title>\n"
        f"<style>{CSS}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )
