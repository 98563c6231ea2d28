"""The report page's stylesheet (inlined into ``index.html``; nothing is fetched).

Calls are badges that differ in shape as well as colour: each has its own symbol (drawn
by CSS, so the text stays the plain word) and inconclusive has a dashed border; the text
on every badge meets WCAG AA contrast.
"""

from __future__ import annotations

__all__ = ["CSS"]

CSS = """
:root { --ink:#1d2330; --muted:#5b6472; --line:#dde1e7; --soft:#f5f7fa; --accent:#0072B2;
  --ok:#007a59; --warn:#9a5c00; --bad:#b34700; --idle:#6b7380; }
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
.answer { border-left: 4px solid var(--accent); background: #eef6fb; padding: 10px 14px;
  border-radius: 0 6px 6px 0; margin: 10px 0 14px; }
.answer p { margin: 0; }
.answer .answer-text { font-size: 17px; font-weight: 600; }
.answer .primary { margin-top: 6px; font-size: 15px; }
.answer .primary-detail { margin-top: 2px; font-size: 13px; color: var(--muted); }
.verdict-rest { color: #3a4250; }
.key { display: inline-block; font-weight: 600; font-variant-numeric: tabular-nums;
  white-space: nowrap; }
.badge { display: inline-block; font-size: 12px; font-weight: 600; padding: 1px 9px;
  border-radius: 999px; color: #fff; background: var(--idle); white-space: nowrap;
  vertical-align: middle; }
.badge.done { background: var(--ok); } .badge.partial { background: var(--warn); }
.badge.failed, .badge.analysis-error, .badge.unavailable { background: var(--bad); }
.call { display: inline-block; font-size: 12.5px; font-weight: 700; padding: 0 8px;
  border: 1.5px solid; border-radius: 4px; white-space: nowrap; vertical-align: baseline; }
.call::before { margin-right: 4px; }
.call-lowers { color: #00507d; background: #e3f0f8; border-color: #0072B2; }
.call-lowers::before { content: "\\25BC"; content: "\\25BC" / ""; }
.call-raises { color: #8a3500; background: #fbeadf; border-color: #D55E00; }
.call-raises::before { content: "\\25B2"; content: "\\25B2" / ""; }
.call-equivalent { color: #005c43; background: #e0f4ee; border-color: #009E73; }
.call-equivalent::before { content: "="; content: "=" / ""; }
.call-inconclusive { color: #3d4450; background: #f0f1f3; border-color: #6b7380;
  border-style: dashed; }
.call-inconclusive::before { content: "?"; content: "?" / ""; }
.legend { color: var(--muted); font-size: 13px; margin: 4px 0 0; }
.legend .call { margin-right: 2px; }
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
table.summary td.q { width: 28%; }
table.summary td.a { width: 40%; }
table.summary td .key { white-space: normal; }
table.contrasts td.est { white-space: nowrap; }
.figs { display: flex; flex-wrap: wrap; gap: 18px; margin: 12px 0; }
figure { margin: 0; flex: 1 1 440px; max-width: 100%; }
figure.key-figure { margin: 12px 0; max-width: 720px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px;
  background: #fff; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
.notrun { color: var(--muted); }
.provenance { color: var(--muted); font-size: 13px; margin: 0 0 10px; }
.notes { border-left: 4px solid var(--warn); background: #fdf6e8; padding: 8px 14px;
  border-radius: 0 6px 6px 0; margin: 12px 0 14px; }
.notes ul { margin: 0; padding-left: 18px; }
details.raw { margin: 14px 0; border: 1px solid var(--line); border-radius: 6px;
  padding: 6px 12px; }
details.raw summary { cursor: pointer; font-weight: 600; color: var(--muted); }
.failed-list li { color: #7a2e00; }
.refs li, .bib li { margin-bottom: 6px; }
footer { color: var(--muted); font-size: 12px; margin-top: 40px; }
.off-protocol { color: var(--muted); font-size: 12px; font-weight: normal; }
"""
