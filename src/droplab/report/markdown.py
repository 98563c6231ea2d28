"""``report.md``: the report as Markdown, in the same order as the HTML page (answers
first), with the PNG figures beside it; plus the Markdown pieces the findings file reuses
(escaping, tables, the contrast table, the primary contrast's line)."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pandas as pd

from droplab.findings import CALLS, Findings
from droplab.report import contrasts
from droplab.report.references import BIBLIOGRAPHY, resolve
from droplab.report.sections import Section, unresolved_references
from droplab.report.tables import format_frame
from droplab.report.trials import seeds_text

__all__ = [
    "cell",
    "contrast_table",
    "escape",
    "fenced",
    "headline",
    "quote",
    "report",
    "table",
]


def escape(text: str) -> str:
    """Text safe in Markdown prose: no raw HTML tags."""
    return str(text).replace("<", "&lt;").replace(">", "&gt;")


def cell(text: str) -> str:
    """Text safe in one table cell."""
    return escape(text).replace("|", "\\|").replace("\n", " ")


def table(df: pd.DataFrame) -> str:
    """A results table, numbers formatted per column, numeric columns right-aligned."""
    d, numeric, left_out = format_frame(df)
    if d.shape[1] == 0:
        return "_(empty table)_"
    head = "| " + " | ".join(cell(c) for c in d.columns) + " |"
    rule = "|" + "|".join("--:" if num else "---" for num in numeric) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in d.itertuples(index=False)]
    if not rows:
        rows = ["| " + " | ".join("" for _ in d.columns) + " |"]
    note = [f"\n_({left_out} more rows not shown)_"] if left_out else []
    return "\n".join([head, rule, *rows, *note])


def _call(call: str) -> str:
    return f"**{call}** {contrasts.CALL_SYMBOL.get(call, '')}".rstrip()


def contrast_table(rows: list[tuple[str, ...]]) -> str:
    """The secondary contrasts, one row each (:data:`droplab.report.contrasts.COLUMNS`)."""
    numeric = {3, 6}
    head = "| " + " | ".join(contrasts.COLUMNS) + " |"
    rule = "|" + "|".join("--:" if j in numeric else "---" for j in range(len(contrasts.COLUMNS)))
    out = [head, rule + "|"]
    for row in rows:
        cells = [_call(v) if j == 2 else cell(v) for j, v in enumerate(row)]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def headline(f: Findings) -> list[str]:
    """The answer and the primary contrast (or key number) as Markdown paragraphs."""
    out = [f"**Answer:** {escape(contrasts.answer_text(f))}", ""]
    c = f.primary
    if c is not None:
        out += [
            f"**Primary contrast:** {escape(contrasts.estimate_ci(c))}, {_call(c.call)}  ",
            f"_{escape(contrasts.primary_details(c))}_",
            "",
        ]
    elif f.key_number:
        out += [f"**Key number:** {escape(f.key_number)} _({contrasts.OFF_PROTOCOL})_", ""]
    rest = contrasts.verdict_rest(f)
    if rest:
        out += [escape(rest), ""]
    return out


def replications(s: Section) -> list[str]:
    """The primary contrast per root seed (independent replications) and how their calls
    relate (:func:`droplab.findings.agreement`); nothing for a single root seed."""
    if not s.replications and not s.replication_errors:
        return []
    out = [f"**Replications of the primary contrast** ({contrasts.replication_text(s)})", ""]
    if s.replications:
        out += [
            "| Root seed | Replicates | Primary contrast [95% CI] | Call |",
            "|--:|--:|---|---|",
        ]
        out += [
            f"| {seeds_text(list(c.root_seeds))} | {c.n_seeds} | "
            f"{cell(contrasts.estimate_ci(c))} | {_call(c.call)} |"
            for c in s.replications
        ]
    out += [f"- _{escape(e)}_" for e in s.replication_errors]
    return [*out, ""]


def fenced(text: str) -> str:
    """A code block whose fence is longer than any backtick run inside (so text can't end it)."""
    runs = [len(m) for m in re.findall(r"`+", text)]
    fence = "`" * max(3, max(runs, default=0) + 1)
    return f"{fence}\n{text.rstrip()}\n{fence}"


def quote(text: str) -> str:
    return "\n".join("> " + ln if ln.strip() else ">" for ln in escape(text).splitlines())


def _summary(sections: Sequence[Section]) -> list[str]:
    out = [
        "| Study | Question | Answer | Primary contrast [95% CI], call | Trials |",
        "|---|---|---|---|---|",
    ]
    for s in sections:
        f = s.findings
        if f is None:
            answer = cell(s.status_line())
            if s.state in ("not run", "failed"):
                answer += f" `{cell(s.command)}`"
            number = ""
        else:
            answer = cell(contrasts.answer_text(f))
            c = f.primary
            number = (
                f"{cell(contrasts.estimate_ci(c))}, {_call(c.call)}"
                if c is not None
                else cell(f"{f.key_number or ''} ({contrasts.OFF_PROTOCOL})")
            )
        out.append(
            f"| [{cell(s.name)}](#{s.anchor}) | {cell(s.question)} | {answer} | {number} "
            f"| {cell(s.counts())} |"
        )
    legend = "; ".join(f"{_call(c)}: {contrasts.CALL_MEANING[c]}" for c in CALLS)
    return [*out, "", f"_Calls:_ {legend}."]


def _findings(s: Section) -> list[str]:
    f = s.findings
    out = headline(f) + replications(s)
    if s.key_figure is not None:
        out += [f"![{escape(s.key_figure.name)}]({s.key_figure.filename})", ""]
    out += [f"_Figure failed: {escape(err)}_\n" for err in s.figure_errors]
    notes = [s.partial(), s.mixed, *(str(n) for n in f.notes)]
    notes = [n for n in notes if n]
    if notes:
        out += ["**Notes**", "", *(f"- {escape(n)}" for n in notes), ""]
    secondary = [c for c in f.contrasts if c is not f.primary]
    if secondary:
        out += [f"### Secondary contrasts ({len(secondary)})", ""]
        out += [contrast_table(contrasts.rows(secondary)), ""]
    if s.more_figures:
        out += ["### More figures", ""]
        out += [f"![{escape(x.name)}]({x.filename})\n" for x in s.more_figures]
    if f.method:
        out += ["### Method", "", escape(f.method), ""]
    if s.provenance:
        out += [f"_{escape(s.provenance)}_", ""]
    tables = [("main table", f.table)] if isinstance(f.table, pd.DataFrame) else []
    tables += [
        (str(n), t) for n, t in (f.extra_tables or {}).items() if isinstance(t, pd.DataFrame)
    ]
    if tables:
        names = ", ".join(n for n, _ in tables)
        out += [f"<details><summary>Tables: {escape(names)}</summary>", ""]
        for name, t in tables:
            out += [f"**{escape(name)}**", "", table(t), ""]
        out += ["</details>", ""]
    return out


def _section(s: Section) -> list[str]:
    out = ["", f'<a id="{s.anchor}"></a>', "", f"## {escape(s.name)}", ""]
    if s.question:
        out += [quote(s.question), ""]
    out += [f"**Status:** {s.state_text} ({s.counts()})", ""]
    if s.findings is not None:
        out += _findings(s)
    elif s.state in ("analysis error", "unavailable"):
        out += ["The analysis failed:", "", fenced(s.error), ""]
    else:
        lead, rest = s.not_run()
        out += [f"**{lead}** {rest}", "", fenced(s.command), ""]
        if s.mixed:
            out += [f"**{escape(s.mixed)}**", ""]
    if s.failed:
        out += [f"### Failed trials ({len(s.failed)})", ""]
        out += [f"- {escape(t)}" for t in s.failed] + [""]
    if s.references:
        out += ["### References", ""]
        for r in s.references:
            key = resolve(r)
            out.append(f"- {escape(BIBLIOGRAPHY[key].citation if key else r)}")
        out.append("")
    return out


def report(sections: Sequence[Section], meta: dict[str, str]) -> str:
    """The whole ``report.md``; ``meta`` has ``store``, ``generated`` and ``version``."""
    out = [
        "# droplab report: what dropout does",
        "",
        f"Store `{meta['store']}` · generated {meta['generated']} · droplab {meta['version']}",
        "",
        "## Answers",
        "",
        *_summary(sections),
    ]
    for s in sections:
        out += _section(s)
    out += ["", "## Bibliography", ""]
    for ref in BIBLIOGRAPHY.values():
        out.append(f"- {escape(ref.citation)}" + (f" <{ref.url}>" if ref.url else ""))
    out += [f"- {escape(t)}" for t in unresolved_references(sections)]
    return "\n".join(out).rstrip() + "\n"
