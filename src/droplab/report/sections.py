"""Gather what each study contributes to the report: :func:`collect` reads a study's rows
from the store, hands them to its ``analyze`` and returns one :class:`Section` per study
(its state, trial counts, findings, drawn figures, failed trials and provenance).

Nothing here lays anything out (``html``, ``markdown`` and ``findings_md`` do) and nothing
imports the studies: the caller passes them in. Every failure is kept where it happened:
a study whose analysis raises gets a section with the error, failed trials are listed,
and a study with no results gets the command that runs it.
"""

from __future__ import annotations

import shlex
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from droplab.findings import Contrast, Findings
from droplab.report import figures as _figures
from droplab.report import style, trials
from droplab.report.references import resolve

__all__ = ["Section", "collect", "unresolved_references"]

_STATE_TEXT = {
    "done": "done",
    "partial": "partial",
    "not run": "not run",
    "failed": "all trials failed",
    "analysis error": "analysis error",
    "unavailable": "unavailable",
}


@dataclass
class Section:
    """Everything one study contributes to the report."""

    name: str
    anchor: str
    question: str
    command: str
    state: str  # "done" | "partial" | "not run" | "failed" | "analysis error" | "unavailable"
    n_done: int = 0
    n_failed: int = 0
    n_other: int = 0
    findings: Findings | None = None
    error: str = ""
    failed: list[str] = field(default_factory=list)  # one line per failed trial in the store
    figures: list[_figures.Figure] = field(default_factory=list)
    figure_errors: list[str] = field(default_factory=list)
    first_figure: str = ""  # the name of the study's key figure (drawn or not)
    references: list[str] = field(default_factory=list)  # as given by the study
    preset: str = ""
    other_presets: list[str] = field(default_factory=list)
    root_seeds: list[int] = field(default_factory=list)  # of the finished trials
    provenance: str = ""  # code version(s) and thread count(s) of the finished trials
    mixed: str = ""  # the warning when those are not one code version and one thread count
    #: with two or more root seeds: the primary contrast of each root seed's trials alone
    replications: list[Contrast] = field(default_factory=list)
    replication_errors: list[str] = field(default_factory=list)  # root seeds not analysable

    @property
    def state_text(self) -> str:
        return _STATE_TEXT[self.state]

    @property
    def key_figure(self) -> _figures.Figure | None:
        """The study's first figure, if it was drawn."""
        first = self.figures[0] if self.figures else None
        return first if first is not None and first.name == self.first_figure else None

    @property
    def more_figures(self) -> list[_figures.Figure]:
        key = self.key_figure
        return [f for f in self.figures if f is not key]

    def counts(self) -> str:
        """``"preset quick: 6 finished, 1 failed trials (also in the store: standard)"``."""
        parts = [f"{self.n_done} finished"]
        if self.n_failed:
            parts.append(f"{self.n_failed} failed")
        if self.n_other:
            parts.append(f"{self.n_other} unfinished")
        total = self.n_done + self.n_failed + self.n_other
        text = ", ".join(parts) + (" trial" if total == 1 else " trials")
        if self.preset:
            text = f"preset {self.preset}: {text}"
            if self.other_presets:
                text += f" (also in the store: {', '.join(self.other_presets)})"
        elif self.other_presets:
            text += f" (presets {', '.join(self.other_presets)})"
        return text

    def partial(self) -> str:
        """The note of a study analyzed with some trials failed or unfinished ("" if none)."""
        parts = []
        if self.n_failed:
            parts.append(f"{self.n_failed} failed (listed below)")
        if self.n_other:
            parts.append(f"{self.n_other} unfinished")
        if not parts:
            return ""
        return f"Partial results: {self.n_done} trials finished, {', '.join(parts)}."

    def not_run(self) -> tuple[str, str]:
        """(lead, rest) of the line above the command of a study without results."""
        if self.state == "failed":
            return (
                "No trial finished",
                f"({self.n_failed} failed, listed below). Fix the cause and re-run "
                "(finished trials are kept, failed ones retried):",
            )
        if self.n_other:
            return "Not finished yet", f"({self.n_other} unfinished). Resume it with:"
        return "Not run yet.", "Run it with:"

    def status_line(self) -> str:
        """What the summary says of a study without findings."""
        if self.state == "analysis error":
            return "The analysis raised an error (see its section)."
        if self.state == "unavailable":
            return "The study could not be loaded (see its section)."
        if self.state == "failed":
            return f"No trial finished ({self.n_failed} failed); re-run:"
        if self.n_other:
            return "Not finished yet; resume with:"
        return "Not run yet:"


def collect(
    store_path: Path,
    studies: Sequence[Any],
    *,
    preset: str | None = None,
    unavailable: Mapping[str, str] | None = None,
    draw: bool = True,
) -> list[Section]:
    """One :class:`Section` per study, in the given order, then one per unavailable module.

    Args:
        store_path: the SQLite store; a missing file leaves every study "not run" (and
            creates nothing).
        studies: objects with ``name``, ``question`` and ``analyze(frame) -> Findings``.
        preset: the preset to report; None: per study, the largest with finished trials.
        unavailable: module -> import error, shown as "unavailable" sections.
        draw: draw the figures as PNG (False frees them undrawn).
    """
    store = None
    if store_path.exists():
        from droplab.store import Store

        store = Store(store_path, readonly=True)
    style.apply()
    anchors: set[str] = set()
    filenames: set[str] = set()
    try:
        sections = [
            _section(study, store, store_path, preset, anchors, filenames, draw)
            for study in studies
        ]
    finally:
        if store is not None:
            store.close()
    for module, err in dict(unavailable or {}).items():
        sections.append(
            Section(
                name=str(module),
                anchor=_figures.unique(f"study-{_figures.slug(str(module))}", anchors),
                question="",
                command="droplab list",
                state="unavailable",
                error=f"The study module could not be loaded:\n{err}",
            )
        )
    return sections


def _section(
    study: Any,
    store: Any,
    store_path: Path,
    preset: str | None,
    anchors: set[str],
    filenames: set[str],
    draw: bool,
) -> Section:
    name = str(study.name)
    command = f"droplab run {shlex.quote(name)} --store {shlex.quote(str(store_path))}"
    if preset is not None:
        command += f" --preset {shlex.quote(preset)}"
    section = Section(
        name=name,
        anchor=_figures.unique(f"study-{_figures.slug(name)}", anchors),
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
    everything = frame
    frame, section.preset, section.other_presets = trials.one_preset(frame, preset)
    status = trials.status_column(frame)
    done = status.isin(trials.DONE_STATUSES)
    section.n_done = int(done.sum())
    section.n_failed = int(status.isin(trials.FAILED_STATUSES).sum())
    section.n_other = len(frame) - section.n_done - section.n_failed
    section.failed = _failed_lines(everything, section.preset)
    section.provenance, section.mixed = trials.provenance(frame[done])
    section.root_seeds = trials.root_seeds(frame[done])
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
    if findings.primary is not None and len(section.root_seeds) > 1:
        section.replications, section.replication_errors = _replications(
            study, frame, section.root_seeds
        )
    section.state = "partial" if section.n_failed or section.n_other else "done"
    if findings.question and not section.question:
        section.question = str(findings.question)
    section.references = [str(r) for r in findings.references or []]
    section.first_figure = str(next(iter(findings.figures or {}), ""))
    if draw:
        section.figures, section.figure_errors = _figures.collect(name, findings.figures, filenames)
    else:
        _figures.discard(findings.figures)
    return section


def _replications(
    study: Any, frame: pd.DataFrame, seeds: list[int]
) -> tuple[list[Contrast], list[str]]:
    """The primary contrast of each root seed's trials analysed alone (an independent
    replication each), and one line per root seed whose analysis failed or gave no
    primary contrast (e.g. too few finished replicates): the pooled call still stands."""
    out: list[Contrast] = []
    errors: list[str] = []
    for seed in seeds:
        try:
            primary = study.analyze(trials.root_rows(frame, seed)).primary
        except Exception as err:  # reported beside the pooled findings, not raised
            errors.append(f"root seed {seed}: {type(err).__name__}: {err}")
            continue
        if primary is None:
            errors.append(f"root seed {seed}: no primary contrast")
        else:
            out.append(primary)
    return out, errors


def _failed_lines(frame: pd.DataFrame, preset: str) -> list[str]:
    """One line per failed row of the study, every preset; those of another preset than
    the reported one say which."""
    failed = frame[trials.status_column(frame).isin(trials.FAILED_STATUSES)]
    lines = []
    for _, row in failed.iterrows():
        text = trials.describe_failed(row)
        other = str(row["preset"]) if "preset" in row.index else preset
        lines.append(text if not preset or other == preset else f"[preset {other}] {text}")
    return lines


def unresolved_references(sections: Sequence[Section]) -> list[str]:
    """The references the studies cite that are not in the bibliography, once each."""
    extra: list[str] = []
    for s in sections:
        for r in s.references:
            if resolve(r) is None and r not in extra:
                extra.append(r)
    return extra
