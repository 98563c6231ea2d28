"""Render the report from the store alone: ``index.html``, ``report.md`` and PNG figures.

For each study: read its trials from the store, hand the finished ones to the study's
``analyze`` (which returns :class:`~droplab.findings.Findings`), and lay the findings out
as one section. The page opens with a summary table (question, verdict, key number with
its CI, a link to the section) and ends with the bibliography.

Nothing here trains or fetches anything: re-rendering needs only the store. Every failure
is shown where it happened rather than hidden: a study whose analysis raises gets a
section with the error, failed trials are listed, and a study with no results shows the
command that runs it.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import importlib
import io
import math
import re
import shlex
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from droplab.findings import Findings
from droplab.report import style
from droplab.report.references import BIBLIOGRAPHY, resolve

__all__ = ["DONE_STATUSES", "FAILED_STATUSES", "render"]

#: Store statuses of a trial whose results are in the store (passed to ``analyze``).
DONE_STATUSES = frozenset({"finished"})
#: Store statuses of a trial that ran and failed (listed in the report, never hidden).
FAILED_STATUSES = frozenset({"failed"})
# Largest first: the preset reported when the store holds several (droplab.studies.PRESETS).
_PRESET_ORDER = ("full", "standard", "quick")

_ERROR_COLUMNS = ("error", "message", "exception", "traceback")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass
class _Figure:
    name: str
    filename: str
    png: bytes


@dataclass
class _Section:
    """Everything one study contributes to the page, in render order."""

    name: str
    anchor: str
    question: str
    command: str
    state: str  # "done" | "partial" | "not run" | "failed" | "analysis error"
    n_done: int = 0
    n_failed: int = 0
    n_other: int = 0
    findings: Findings | None = None
    error: str = ""
    failed: list[str] = field(default_factory=list)
    figures: list[_Figure] = field(default_factory=list)
    figure_errors: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)  # as given by the study
    preset: str = ""
    other_presets: list[str] = field(default_factory=list)
    provenance: str = ""  # code version(s) and thread count(s) of the finished trials
    mixed: str = ""  # the warning when those are not one code version and one thread count


def render(
    store_path: str | Path,
    out_dir: str | Path,
    studies: Sequence[Any] | None = None,
    *,
    preset: str | None = None,
) -> Path:
    """Render the report of ``studies`` from the store at ``store_path`` into ``out_dir``.

    Args:
        store_path: the SQLite results store. A missing file renders every study as
            "not run" (nothing is created).
        out_dir: the output folder, created if needed. Receives ``index.html`` (one
            self-contained file: figures as base64 PNG data URIs, CSS inline, nothing
            fetched), ``report.md`` and one ``<study>-<figure>.png`` per figure.
        studies: study names or ``Study`` objects, in page order; ``None`` means every
            study of ``droplab.studies.REGISTRY`` in registry order.
        preset: report this preset's trials; ``None``: per study, the largest preset with
            finished trials (full > standard > quick). Presets never mix in one analysis.

    Returns:
        The absolute path of ``index.html``.

    Each study's ``analyze`` gets the store frame's rows of the chosen preset (every
    status, like ``Study.findings``); it is not called when none of them is finished.
    """
    if not isinstance(store_path, str | Path):
        raise TypeError(f"store_path must be a str or Path, got {type(store_path).__name__}")
    if not isinstance(out_dir, str | Path):
        raise TypeError(f"out_dir must be a str or Path, got {type(out_dir).__name__}")
    store_path = Path(store_path)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir={str(out)!r} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    chosen = _resolve_studies(studies)

    store = None
    if store_path.exists():
        from droplab.store import Store

        store = Store(store_path, readonly=True)

    style.apply()
    sections: list[_Section] = []
    anchors: set[str] = set()
    filenames: set[str] = set()
    for study in chosen:
        section = _build_section(study, store, store_path, preset, anchors, filenames)
        sections.append(section)
    if studies is None:  # registered modules that failed to import: shown, not hidden
        unavailable = getattr(importlib.import_module("droplab.studies"), "UNAVAILABLE", {})
        for module, err in dict(unavailable).items():
            sections.append(
                _Section(
                    name=str(module),
                    anchor=_unique(f"study-{_slug(str(module))}", anchors),
                    question="",
                    command="droplab list",
                    state="unavailable",
                    error=f"The study module could not be loaded:\n{err}",
                )
            )
    close = getattr(store, "close", None)
    if callable(close):
        close()

    for section in sections:
        for fig in section.figures:
            (out / fig.filename).write_bytes(fig.png)
    meta = {
        "store": str(store_path),
        "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "version": _version(),
    }
    (out / "report.md").write_text(_markdown(sections, meta), encoding="utf-8")
    index = out / "index.html"
    index.write_text(_html(sections, meta), encoding="utf-8")
    return index.resolve()


# ----------------------------------------------------------------------------- gathering


def _resolve_studies(studies: Sequence[Any] | None) -> list[Any]:
    registry = importlib.import_module("droplab.studies")

    if studies is None:
        return list(registry.REGISTRY.values())
    if isinstance(studies, str):
        raise TypeError(
            f"studies must be a list of names or Study objects, got the string {studies!r}"
        )
    chosen = []
    for s in studies:
        if isinstance(s, str):
            chosen.append(registry.get(s))
        elif hasattr(s, "name") and hasattr(s, "analyze"):
            chosen.append(s)
        else:
            raise TypeError(f"studies entries must be names or Study objects, got {s!r}")
    return chosen


def _build_section(
    study: Any,
    store: Any,
    store_path: Path,
    preset: str | None,
    anchors: set[str],
    filenames: set[str],
) -> _Section:
    name = str(study.name)
    command = f"droplab run {shlex.quote(name)} --store {shlex.quote(str(store_path))}"
    if preset is not None:
        command += f" --preset {shlex.quote(preset)}"
    section = _Section(
        name=name,
        anchor=_unique(f"study-{_slug(name)}", anchors),
        question=str(getattr(study, "question", "") or ""),
        command=command,
        state="not run",
    )
    frame = pd.DataFrame({"status": pd.Series(dtype=object), "preset": pd.Series(dtype=object)})
    if store is not None:
        try:
            frame = store.frame(name)
        except Exception:
            section.state = "analysis error"
            section.error = "Reading the store failed:\n" + traceback.format_exc()
            return section
    frame, section.preset, section.other_presets = _one_preset(frame, preset)
    status = _status_column(frame)
    done = status.isin(DONE_STATUSES)
    failed_rows = frame[status.isin(FAILED_STATUSES)]
    section.n_done, section.n_failed = int(done.sum()), len(failed_rows)
    section.n_other = len(frame) - section.n_done - section.n_failed
    section.failed = [_describe_failed(row) for _, row in failed_rows.iterrows()]
    section.provenance, section.mixed = _provenance(frame[done])
    if section.n_done == 0:
        section.state = "failed" if section.n_failed else "not run"
        return section

    try:
        # The rows of one preset, every status (as Study.findings gives them).
        findings = study.analyze(frame.reset_index(drop=True))
        if not isinstance(findings, Findings):
            raise TypeError(
                f"{name}.analyze returned {type(findings).__name__}, expected droplab.findings.Findings"
            )
    except Exception:
        section.state = "analysis error"
        section.error = traceback.format_exc()
        return section

    section.findings = findings
    section.state = "partial" if section.n_failed or section.n_other else "done"
    if findings.question and not section.question:
        section.question = str(findings.question)
    for text in findings.failed or []:
        if str(text) not in section.failed:
            section.failed.append(str(text))
    section.references = [str(r) for r in findings.references or []]
    for fig_name, fig in (findings.figures or {}).items():
        try:
            png = _png(fig)
        except Exception as e:
            section.figure_errors.append(f"{fig_name}: {type(e).__name__}: {e}")
            continue
        filename = _unique(f"{_slug(name)}-{_slug(str(fig_name))}", filenames) + ".png"
        section.figures.append(_Figure(str(fig_name), filename, png))
    return section


def _one_preset(frame: pd.DataFrame, preset: str | None) -> tuple[pd.DataFrame, str, list[str]]:
    """The rows of ``preset``, or of the largest preset with finished trials (full >
    standard > quick, then others by name); with no finished trials anywhere, all rows.
    Returns (rows, chosen preset or "", the other presets in the store)."""
    if "preset" not in frame.columns:
        return frame, preset or "", []
    presets = [str(p) for p in pd.unique(frame["preset"].dropna())]
    if preset is None:
        finished = set(frame.loc[_status_column(frame).isin(DONE_STATUSES), "preset"].astype(str))
        order = [p for p in _PRESET_ORDER if p in finished] + sorted(finished - set(_PRESET_ORDER))
        if not order:
            return frame, "", sorted(presets)
        preset = order[0]
    rows = frame[frame["preset"].astype(str) == preset]
    return rows, preset, sorted(p for p in presets if p != preset)


def _status_column(frame: pd.DataFrame) -> pd.Series:
    if "status" not in frame.columns:
        # No status column: a store that keeps only finished trials.
        return pd.Series(["done"] * len(frame), index=frame.index, dtype=object)
    return frame["status"].astype(str).str.strip().str.lower()


# Store columns that are not a trial's config (for failed rows metrics are all NaN, so
# what is left and present is the config).
_NOT_CONFIG = frozenset(
    {"hash", "study", "preset", "seed", "status", "attempts", "seconds", "started_at"}
    | {"finished_at", "host", "backend", "device", "droplab_version", "torch_version"}
    | {"python_version", "code_version", "threads", "curves", *_ERROR_COLUMNS}
)


def _value_counts(rows: pd.DataFrame, column: str) -> list[tuple[str, int]]:
    """(value as text, number of rows) of ``column``, most common first; a missing column
    or value (trials stored before the store recorded it) counts as "not recorded"."""
    if column in rows.columns:
        values = [_fmt(v) if _present(v) else "not recorded" for v in rows[column]]
    else:
        values = ["not recorded"] * len(rows)
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def _provenance(done: pd.DataFrame) -> tuple[str, str]:
    """(line, warning) about what trained the finished trials ``done``: the code version
    (git commit) and torch thread count. Both are needed to reproduce the numbers digit for
    digit (docs/findings.md). The warning is "" unless the trials mix several of either
    (or mix recorded and unrecorded ones)."""
    if len(done) == 0:
        return "", ""
    parts, mixed = [], []
    for column, one, unknown, many in (
        ("code_version", "code {}", "code version not recorded", "code versions"),
        ("threads", "{} torch thread", "thread count not recorded", "torch thread counts"),
    ):
        counts = _value_counts(done, column)
        if len(counts) == 1:
            value = counts[0][0]
            text = one.format(value) + ("" if value == "1" else "s") * (column == "threads")
            parts.append(unknown if value == "not recorded" else text)
        else:
            listed = ", ".join(f"{v} ({n} trial{'s' * (n != 1)})" for v, n in counts)
            parts.append(f"{many} {listed}")
            mixed.append(f"{len(counts)} {many.removeprefix('torch ')}")
    line = "Provenance: " + "; ".join(parts) + "."
    warning = ""
    if mixed:
        warning = (
            f"Mixed provenance: the finished trials come from {' and '.join(mixed)}, so these "
            "numbers are not reproducible digit for digit from one checkout and one thread "
            "count; re-run the study into a fresh store to get a single-provenance result."
        )
    return line, warning


def _describe_failed(row: pd.Series) -> str:
    """``"<config> seed S (trial abc123…): <last line of the error>"``."""
    config = [f"{k}={_fmt(row[k])}" for k in row.index if k not in _NOT_CONFIG and _present(row[k])]
    text = " ".join(config[:10]) + (" …" if len(config) > 10 else "")
    if "seed" in row.index and _present(row["seed"]):
        text += f" seed {_fmt(row['seed'])}"
    if "hash" in row.index and _present(row["hash"]):
        text += f" (trial {str(row['hash'])[:10]})"
    text = text.strip() or f"row {row.name}"
    for col in _ERROR_COLUMNS:
        if col in row.index and _present(row[col]) and str(row[col]).strip():
            lines = [ln for ln in str(row[col]).strip().splitlines() if ln.strip()]
            text += f": {lines[-1].strip()[:300]}"
            break
    else:
        text += ": no error text stored"
    return text


def _png(fig: Any) -> bytes:
    """PNG bytes of a matplotlib figure (or PNG bytes given directly)."""
    if isinstance(fig, bytes | bytearray):
        if not bytes(fig).startswith(_PNG_MAGIC):
            raise ValueError("figure bytes are not a PNG image")
        return bytes(fig)
    if not hasattr(fig, "savefig"):
        raise TypeError(f"expected a matplotlib Figure or PNG bytes, got {type(fig).__name__}")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=150, bbox_inches="tight")
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close(fig)  # free pyplot-managed figures; harmless for plain Figures
    return buf.getvalue()


# ----------------------------------------------------------------------------- formatting


def _present(v: Any) -> bool:
    if v is None:
        return False
    try:
        return not bool(pd.isna(v))
    except (TypeError, ValueError):
        return True


def _fmt(v: Any) -> str:
    """One table cell as text: integers plainly, floats to 4 significant digits."""
    if isinstance(v, bool | np.bool_):
        return str(bool(v))
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        x = float(v)
        if math.isnan(x):
            return "–"
        if math.isinf(x):
            return "∞" if x > 0 else "−∞"
        if x == 0:
            return "0"
        if abs(x) >= 1e5:
            return f"{x:,.0f}"
        if abs(x) < 1e-3:
            return f"{x:.2e}"
        return f"{x:.4g}"
    if not _present(v):
        return "–"
    return str(v)


_MAX_ROWS = 200  # longer tables are cut, with a note saying how many rows are left out


def _display_frame(table: pd.DataFrame) -> tuple[pd.DataFrame, list[bool], int]:
    """The table as text, ready to print: a meaningful index made into columns, flat
    headers, cells formatted by :func:`_fmt`, at most ``_MAX_ROWS`` rows.

    Returns (text frame, per column whether it is numeric, number of rows left out)."""
    df = table
    if not (isinstance(df.index, pd.RangeIndex) and df.index.name is None):
        df = df.reset_index()
    columns = df.columns
    if isinstance(columns, pd.MultiIndex):
        columns = [
            " / ".join(str(c) for c in col if str(c) != "") for col in columns.to_flat_index()
        ]
    numeric = [
        pd.api.types.is_numeric_dtype(df.iloc[:, j])
        and not pd.api.types.is_bool_dtype(df.iloc[:, j])
        for j in range(df.shape[1])
    ]
    left_out = max(0, len(df) - _MAX_ROWS)
    text = df.iloc[:_MAX_ROWS].map(_fmt) if len(df) else df.astype(object)
    text.columns = [str(c) for c in columns]
    return text, numeric, left_out


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def _unique(base: str, taken: set[str]) -> str:
    name, i = base, 2
    while name in taken:
        name, i = f"{base}-{i}", i + 1
    taken.add(name)
    return name


def _version() -> str:
    try:
        import droplab

        return str(droplab.__version__)
    except Exception:
        return "?"


def _citations(sections: list[_Section]) -> tuple[list[str], list[str]]:
    """Bibliography keys (all known entries) and any unresolved texts the studies cite."""
    extra: list[str] = []
    for s in sections:
        for r in s.references:
            if resolve(r) is None and r not in extra:
                extra.append(r)
    return list(BIBLIOGRAPHY), extra


_STATE_TEXT = {
    "done": "done",
    "partial": "partial",
    "not run": "not run",
    "failed": "all trials failed",
    "analysis error": "analysis error",
    "unavailable": "unavailable",
}


def _summary_verdict(s: _Section) -> tuple[str, str]:
    """(verdict, key number) for the summary table."""
    if s.findings is not None:
        return str(s.findings.verdict), str(s.findings.key_number or "")
    if s.state == "analysis error":
        return "The analysis raised an error (see its section).", ""
    if s.state == "unavailable":
        return "The study could not be loaded (see its section).", ""
    if s.state == "failed":
        return f"No finished trials: {s.n_failed} failed.", ""
    return f"Not run yet: {s.command}", ""


def _partial_text(s: _Section) -> str:
    parts = []
    if s.n_failed:
        parts.append(f"{s.n_failed} failed (listed below)")
    if s.n_other:
        parts.append(f"{s.n_other} unfinished")
    return f"Partial results: {s.n_done} trials finished, {', '.join(parts)}."


def _not_run_text(s: _Section) -> str:
    """The line above the command of a study without results (HTML-safe, no user text)."""
    if s.state == "failed":
        return (
            f"<strong>No trial finished</strong> ({s.n_failed} failed, listed below). "
            "Fix the cause and re-run (finished trials are kept, failed ones retried):"
        )
    if s.n_other:
        return f"<strong>Not finished yet</strong> ({s.n_other} unfinished). Resume it with:"
    return "<strong>Not run yet.</strong> Run it with:"


def _trial_counts(s: _Section) -> str:
    parts = [f"{s.n_done} finished"]
    if s.n_failed:
        parts.append(f"{s.n_failed} failed")
    if s.n_other:
        parts.append(f"{s.n_other} unfinished")
    text = ", ".join(parts) + " trials"
    if s.preset:
        text = f"preset {s.preset}: {text}"
        if s.other_presets:
            text += f" (also in the store: {', '.join(s.other_presets)})"
    elif s.other_presets:
        text += f" (presets {', '.join(s.other_presets)})"
    return text


# ----------------------------------------------------------------------------- Markdown


def _md_escape(text: str) -> str:
    return str(text).replace("<", "&lt;").replace(">", "&gt;")


def _md_cell(text: str) -> str:
    return _md_escape(text).replace("|", "\\|").replace("\n", " ")


def _md_table(df: pd.DataFrame) -> str:
    d, numeric, left_out = _display_frame(df)
    if d.shape[1] == 0:
        return "_(empty table)_"
    head = "| " + " | ".join(_md_cell(c) for c in d.columns) + " |"
    rule = "|" + "|".join("--:" if num else "---" for num in numeric) + "|"
    rows = ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in d.itertuples(index=False)]
    if not rows:
        rows = ["| " + " | ".join("" for _ in d.columns) + " |"]
    note = [f"\n_({left_out} more rows not shown)_"] if left_out else []
    return "\n".join([head, rule, *rows, *note])


def _md_fenced(text: str) -> str:
    """A code block whose fence is longer than any backtick run inside (so text can't end it)."""
    runs = [len(m) for m in re.findall(r"`+", text)]
    fence = "`" * max(3, max(runs, default=0) + 1)
    return f"{fence}\n{text.rstrip()}\n{fence}"


def _md_quote(text: str) -> str:
    return "\n".join("> " + ln if ln.strip() else ">" for ln in _md_escape(text).splitlines())


def _markdown(sections: list[_Section], meta: dict[str, str]) -> str:
    keys, extra = _citations(sections)
    out = [
        "# droplab report: what dropout does",
        "",
        f"Store `{meta['store']}` · generated {meta['generated']} · droplab {meta['version']}",
        "",
        "## Summary",
        "",
        "| Study | Question | Verdict | Key number [95% CI] | Trials |",
        "|---|---|---|---|---|",
    ]
    for s in sections:
        verdict, key = _summary_verdict(s)
        verdict = _md_cell(verdict)
        if s.findings is None and s.state in ("not run", "failed"):
            verdict = f"{_md_cell(verdict.split(':')[0])}: `{_md_cell(s.command)}`"
        out.append(
            f"| [{_md_cell(s.name)}](#{s.anchor}) | {_md_cell(s.question)} | {verdict} "
            f"| {_md_cell(key)} | {_md_cell(_trial_counts(s))} |"
        )
    for s in sections:
        out += ["", f'<a id="{s.anchor}"></a>', "", f"## {_md_escape(s.name)}", ""]
        if s.question:
            out += [_md_quote(s.question), ""]
        out += [f"**Status:** {_STATE_TEXT[s.state]} ({_trial_counts(s)})", ""]
        if s.provenance:
            out += [f"_{_md_escape(s.provenance)}_", ""]
        if s.mixed:
            out += [f"**{_md_escape(s.mixed)}**", ""]
        if s.findings is None:
            if s.state in ("analysis error", "unavailable"):
                out += ["The analysis failed:", "", _md_fenced(s.error), ""]
            else:
                out += [_not_run_text(s).replace("<strong>", "**").replace("</strong>", "**")]
                out += ["", _md_fenced(s.command), ""]
        else:
            f = s.findings
            if s.state == "partial":
                out += [f"_{_partial_text(s)}_", ""]
            out += [f"**Verdict:** {_md_escape(f.verdict)}", ""]
            if f.key_number:
                out += [f"**Key number:** {_md_escape(f.key_number)}", ""]
            for fig in s.figures:
                out += [f"![{_md_escape(fig.name)}]({fig.filename})", ""]
            for err in s.figure_errors:
                out += [f"_Figure failed: {_md_escape(err)}_", ""]
            if isinstance(f.table, pd.DataFrame):
                out += [_md_table(f.table), ""]
            for tname, t in (f.extra_tables or {}).items():
                if isinstance(t, pd.DataFrame):
                    out += [f"**{_md_escape(tname)}**", "", _md_table(t), ""]
            if f.method:
                out += ["### Method", "", _md_escape(f.method), ""]
        if s.failed:
            out += [f"### Failed trials ({len(s.failed)})", ""]
            out += [f"- {_md_escape(t)}" for t in s.failed] + [""]
        if s.references:
            out += ["### References", ""]
            for r in s.references:
                key = resolve(r)
                text = BIBLIOGRAPHY[key].citation if key else r
                out.append(f"- {_md_escape(text)}")
            out.append("")
    out += ["", "## Bibliography", ""]
    for k in keys:
        ref = BIBLIOGRAPHY[k]
        out.append(f"- {_md_escape(ref.citation)}" + (f" <{ref.url}>" if ref.url else ""))
    out += [f"- {_md_escape(t)}" for t in extra]
    return "\n".join(out).rstrip() + "\n"


# ----------------------------------------------------------------------------- HTML

_CSS = """
:root { --ink:#1d2330; --muted:#5b6472; --line:#dde1e7; --soft:#f5f7fa; --accent:#0072B2;
  --ok:#009E73; --warn:#E69F00; --bad:#D55E00; --idle:#8a93a0; }
* { box-sizing: border-box; }
body { margin:0; color:var(--ink); background:#fff; line-height:1.55;
  font:15px/1.55 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1080px; margin: 0 auto; padding: 28px 28px 64px; }
header h1 { margin: 0 0 4px; font-size: 28px; letter-spacing: -0.01em; }
header p.meta { margin: 0 0 24px; color: var(--muted); font-size: 13px; }
h2 { font-size: 22px; margin: 0 0 10px; }
h3 { font-size: 15px; margin: 22px 0 8px; text-transform: uppercase; letter-spacing: .05em;
  color: var(--muted); }
a { color: var(--accent); }
code, pre { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 13px; }
code { background: var(--soft); padding: 1px 5px; border-radius: 4px; }
pre { background: var(--soft); border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px;
  overflow-x: auto; white-space: pre-wrap; }
blockquote { margin: 0 0 14px; padding: 8px 16px; border-left: 4px solid var(--line);
  color: #3a4250; font-style: italic; background: #fafbfc; }
.card { border: 1px solid var(--line); border-radius: 10px; padding: 22px 24px; margin: 26px 0; }
.verdict { border-left: 4px solid var(--accent); background: #eef6fb; padding: 10px 14px;
  border-radius: 0 6px 6px 0; margin: 10px 0 14px; font-size: 16px; }
.keyline { margin-top: 6px; font-size: 14px; color: var(--muted); }
.keyline .key { color: var(--ink); }
.key { display: inline-block; font-weight: 600; font-variant-numeric: tabular-nums;
  white-space: nowrap; }
.badge { display: inline-block; font-size: 12px; font-weight: 600; padding: 1px 9px;
  border-radius: 999px; color: #fff; background: var(--idle); white-space: nowrap;
  vertical-align: middle; }
.badge.done { background: var(--ok); } .badge.partial { background: var(--warn); }
.badge.failed, .badge.analysis-error, .badge.unavailable { background: var(--bad); }
.section-head { display: flex; align-items: baseline; gap: 12px; flex-wrap: wrap; }
.counts { color: var(--muted); font-size: 13px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13.5px;
  font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 10px; text-align: left;
  vertical-align: top; }
th { background: var(--soft); font-weight: 600; }
th.num, td.num { text-align: right; }
tbody tr:nth-child(even) td { background: #fbfcfd; }
.table-wrap { overflow-x: auto; max-width: 100%; }
table.summary { width: 100%; font-size: 14px; }
table.summary td.q { width: 30%; }
table.summary td.v { width: 44%; }
table.summary td .key { white-space: normal; }
.figs { display: flex; flex-wrap: wrap; gap: 18px; margin: 12px 0; }
figure { margin: 0; flex: 1 1 440px; max-width: 100%; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px;
  background: #fff; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
.notrun { color: var(--muted); }
.provenance { color: var(--muted); font-size: 13px; margin: 0 0 10px; }
.mixed { border-left: 4px solid var(--warn); background: #fdf6e8; padding: 8px 14px;
  border-radius: 0 6px 6px 0; margin: 0 0 14px; }
.failed-list li { color: #7a2e00; }
.refs li, .bib li { margin-bottom: 6px; }
footer { color: var(--muted); font-size: 12px; margin-top: 40px; }
"""


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


def _html_table(df: pd.DataFrame) -> str:
    d, numeric, left_out = _display_frame(df)
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


def _badge(state: str) -> str:
    return f'<span class="badge {_slug(state)}">{_e(_STATE_TEXT[state])}</span>'


def _ref_item(r: str) -> str:
    key = resolve(r)
    if key is None:
        return f"<li>{_e(r)}</li>"
    ref = BIBLIOGRAPHY[key]
    return f'<li><a href="#ref-{_e(key)}">{_e(ref.short)}</a>. {_e(ref.citation)}</li>'


def _html_section(s: _Section) -> str:
    h = [f'<section class="card study" id="{_e(s.anchor)}" data-study="{_e(s.name)}">']
    h.append(
        f'<div class="section-head"><h2>{_e(s.name)}</h2>{_badge(s.state)}'
        f'<span class="counts">{_e(_trial_counts(s))}</span></div>'
    )
    if s.question:
        h.append(f"<blockquote>{_e(s.question)}</blockquote>")
    if s.provenance:
        h.append(f'<p class="provenance">{_e(s.provenance)}</p>')
    if s.mixed:
        h.append(f'<p class="mixed">{_e(s.mixed)}</p>')
    if s.findings is None:
        if s.state in ("analysis error", "unavailable"):
            h.append("<p><strong>The analysis failed:</strong></p>")
            h.append(f'<pre class="error">{_e(s.error.rstrip())}</pre>')
        else:
            h.append(f'<p class="notrun">{_not_run_text(s)}</p>')
            h.append(f'<pre class="command">{_e(s.command)}</pre>')
    else:
        f = s.findings
        if s.state == "partial":
            h.append(f'<p class="notrun">{_e(_partial_text(s))}</p>')
        key = (
            f'<div class="keyline">Key number: <span class="key">{_e(f.key_number)}</span></div>'
            if f.key_number
            else ""
        )
        h.append(f'<div class="verdict">{_e(f.verdict)}{key}</div>')
        if s.figures or s.figure_errors:
            h.append('<div class="figs">')
            for fig in s.figures:
                data = base64.b64encode(fig.png).decode("ascii")
                h.append(
                    f'<figure><img src="data:image/png;base64,{data}" '
                    f'alt="{_e(s.name)}: {_e(fig.name)}" data-figure="{_e(fig.name)}">'
                    f"<figcaption>{_e(fig.name.replace('_', ' '))}</figcaption></figure>"
                )
            h.append("</div>")
            for err in s.figure_errors:
                h.append(f'<p class="failed-list">Figure failed: {_e(err)}</p>')
        if isinstance(f.table, pd.DataFrame):
            h.append(_html_table(f.table))
        for tname, t in (f.extra_tables or {}).items():
            if isinstance(t, pd.DataFrame):
                h.append(f"<h3>{_e(tname)}</h3>")
                h.append(_html_table(t))
        if f.method:
            h.append("<h3>Method</h3>")
            h.append(_rich(f.method))
    if s.failed:
        h.append(f"<h3>Failed trials ({len(s.failed)})</h3>")
        items = "".join(f"<li>{_e(t)}</li>" for t in s.failed)
        h.append(f'<ul class="failed-list">{items}</ul>')
    if s.references:
        h.append("<h3>References</h3>")
        h.append('<ul class="refs">' + "".join(_ref_item(r) for r in s.references) + "</ul>")
    h.append("</section>")
    return "\n".join(h)


def _summary_verdict_html(s: _Section, verdict: str) -> str:
    if s.findings is None and s.state in ("not run", "failed"):
        lead = (
            "Not run yet"
            if s.state == "not run"
            else f"No trial finished ({s.n_failed} failed); re-run"
        )
        return f"{lead}: <code>{_e(s.command)}</code>"
    return _e(verdict)


def _html(sections: list[_Section], meta: dict[str, str]) -> str:
    keys, extra = _citations(sections)
    rows = []
    for s in sections:
        verdict, key = _summary_verdict(s)
        rows.append(
            "<tr>"
            f'<td><a href="#{_e(s.anchor)}">{_e(s.name)}</a><br>{_badge(s.state)}</td>'
            f'<td class="q">{_e(s.question)}</td>'
            f'<td class="v">{_summary_verdict_html(s, verdict)}</td>'
            f'<td><span class="key">{_e(key)}</span></td>'
            "</tr>"
        )
    if not rows:
        rows.append('<tr><td colspan="4" class="notrun">No studies registered.</td></tr>')
    bib = []
    for k in keys:
        ref = BIBLIOGRAPHY[k]
        link = f' <a href="{_e(ref.url)}">{_e(ref.url)}</a>' if ref.url else ""
        bib.append(f'<li id="ref-{_e(k)}">{_e(ref.citation)}{link}</li>')
    bib += [f"<li>{_e(t)}</li>" for t in extra]
    body = "\n".join(
        [
            "<header><h1>droplab report: what dropout does</h1>",
            f'<p class="meta">Store <code>{_e(meta["store"])}</code> · generated '
            f"{_e(meta['generated'])} · droplab {_e(meta['version'])}</p></header>",
            '<section id="summary"><h2>Summary</h2>',
            '<div class="table-wrap"><table class="summary"><thead><tr><th>Study</th>'
            "<th>Question</th><th>Verdict</th><th>Key number [95% CI]</th></tr></thead><tbody>",
            *rows,
            "</tbody></table></div></section>",
            *(_html_section(s) for s in sections),
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
        f"<style>{_CSS}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )
