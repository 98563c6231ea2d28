"""render(): files, sections, not-run / failed / error states, escaping, presets, which
studies (see test_layout.py for the order inside a section, test_tables.py for numbers)."""

from __future__ import annotations

import base64
import html
import re
import sys
import types
from html.parser import HTMLParser

import pandas as pd
import pytest

from droplab.report import render
from droplab.report.references import BIBLIOGRAPHY, resolve

from .conftest import EVIL, STUDIES, FakeStudy, _record, analyze_effect

PNG = b"\x89PNG\r\n\x1a\n"


class Page(HTMLParser):
    """Collects ids, hrefs, img srcs and the tag names of a page."""

    def __init__(self, text: str):
        super().__init__()
        self.ids: list[str] = []
        self.hrefs: list[str] = []
        self.imgs: list[dict] = []
        self.tags: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "a" and "href" in a:
            self.hrefs.append(a["href"])
        if tag == "img":
            self.imgs.append(a)


@pytest.fixture
def report(rendered):
    _, index = rendered
    return index, index.read_text(encoding="utf-8")


def test_writes_index_markdown_and_pngs(report):
    index, _ = report
    out = index.parent
    assert index == (out / "index.html").resolve() and index.is_absolute()
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["effect-error-bars.png", "effect-error-vs-rate.png"]
    for p in out.glob("*.png"):
        assert p.read_bytes().startswith(PNG)
    md = (out / "report.md").read_text(encoding="utf-8")
    for name in pngs:
        assert f"]({name})" in md  # the Markdown shows the PNG beside it


def test_summary_links_every_section(report):
    _, text = report
    page = Page(text)
    for study in STUDIES:
        anchor = f"study-{study.name}"
        assert anchor in page.ids
        assert f"#{anchor}" in page.hrefs
    summary = text[text.index('id="summary"') : text.index('id="study-effect"')]
    assert "droplab run notrun --store" in summary  # not run: the command
    assert "analysis error" in summary and "all trials failed" in summary


def _section(text: str, name: str) -> str:
    start = text.index(f'id="study-{name}"')
    return text[start : text.index("</section>", start)]


def test_done_section_has_question_answer_figures_tables_method_refs(report):
    _, text = report
    sec = _section(text, "effect")
    assert "How much exactly does drop-out help? How to quantify that?" in sec
    assert sec.count("<img ") == 2
    assert "<table" in sec and "per seed" in sec
    assert "<code>mnist1d</code>" in sec  # inline code in the method
    assert html.escape(BIBLIOGRAPHY["srivastava2014"].citation) in sec
    assert html.escape(BIBLIOGRAPHY["wager2013"].citation) in sec
    assert "Someone, A. (1999). Unlisted." in sec  # unknown reference kept as given
    assert "partial" in sec  # one trial failed, so the results are partial
    # the failed trial is listed with its config, seed and error's last line, escaped
    assert "Failed trials (1)" in sec and "rate=0.9 seed 0" in sec
    assert "ValueError: &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in sec


def test_not_run_failed_and_error_sections(report, rendered):
    _, text = report
    store_path, _ = rendered
    notrun = _section(text, "notrun")
    assert "Not run yet" in notrun and f"droplab run notrun --store {store_path}" in notrun
    allfailed = _section(text, "allfailed")
    assert "Failed trials (1)" in allfailed and "OOM: out of memory" in allfailed
    assert "No trial finished" in allfailed and "droplab run allfailed --store" in allfailed
    broken = _section(text, "broken")
    assert "The analysis failed" in broken and "RuntimeError: analysis exploded" in broken


def test_all_text_is_escaped_and_page_is_self_contained(report):
    _, text = report
    assert "<script" not in text  # the evil strings appear only escaped
    page = Page(text)
    assert "script" not in page.tags and "link" not in page.tags and "iframe" not in page.tags
    assert not re.search(r"""(src|srcset)\s*=\s*["']?(https?:|//)""", text)
    assert "url(" not in text  # no CSS fetches
    assert len(page.imgs) == 2
    for img in page.imgs:
        prefix = "data:image/png;base64,"
        assert img["src"].startswith(prefix)
        assert base64.b64decode(img["src"][len(prefix) :]).startswith(PNG)
        assert img["alt"].startswith("effect: ")


def test_bibliography_lists_all_eight_references(report):
    _, text = report
    bib = text[text.index('id="bibliography"') :]
    for key, ref in BIBLIOGRAPHY.items():
        assert f'id="ref-{key}"' in bib and html.escape(ref.citation) in bib
    assert len(BIBLIOGRAPHY) == 8


def test_markdown_has_the_same_content(rendered):
    store_path, index = rendered
    md = (index.parent / "report.md").read_text(encoding="utf-8")
    assert "| [effect](#study-effect) |" in md
    assert "**Answer:** Dropout 0.5 lowers test error by 4.0 points on this toy store." in md
    assert f"droplab run notrun --store {store_path}" in md
    assert "RuntimeError: analysis exploded" in md
    prose = re.sub(r"```.*?```", "", md, flags=re.S)  # code blocks show text verbatim
    assert "&lt;script&gt;" in prose and "<script" not in prose
    assert "## Bibliography" in md and BIBLIOGRAPHY["greydanus2020"].citation in md
    assert re.search(r"^\| rate \| mean \| sd \| n \| lo \| hi \|$", md, re.M)


def test_missing_store_renders_every_study_as_not_run(tmp_path):
    missing = tmp_path / "nope.db"
    index = render(missing, tmp_path / "out", STUDIES[:2])
    text = index.read_text(encoding="utf-8")
    assert not missing.exists()  # nothing created
    assert text.count('<pre class="command">') == 2
    assert f"droplab run effect --store {missing}" in text


def test_largest_preset_is_reported_and_presets_never_mix(store_path, tmp_path):
    from droplab.store import Store

    store = Store(store_path)
    store.record(
        [
            _record(
                "effect",
                {"rate": r},
                s,
                preset="standard",
                status="finished",
                metrics={"test_error": 30.0 - 10.0 * r},
            )
            for r in (0.0, 0.5)
            for s in range(2)
        ]
    )
    store.close()
    text = render(store_path, tmp_path / "a", STUDIES[:1]).read_text(encoding="utf-8")
    sec = _section(text, "effect")
    assert "preset standard: 4 finished trials (also in the store: quick)" in sec
    assert "-5.0 [-6.2, -3.8] points" in sec  # standard rows only: -10 * 0.5
    # the quick preset's failed trial is still listed, marked with its preset
    assert "Failed trials (1)" in sec and "[preset quick] rate=0.9 seed 0" in sec
    text = render(store_path, tmp_path / "b", STUDIES[:1], preset="quick").read_text("utf-8")
    assert "-4.0 [-5.2, -2.8] points" in _section(text, "effect")


def test_registry_is_the_default(store_path, tmp_path, monkeypatch):
    fake = types.ModuleType("droplab.studies")
    fake.REGISTRY = {s.name: s for s in STUDIES[:2]}
    fake.get = fake.REGISTRY.__getitem__
    monkeypatch.setitem(sys.modules, "droplab.studies", fake)
    text = render(store_path, tmp_path / "out").read_text(encoding="utf-8")
    ids = Page(text).ids
    assert "study-effect" in ids and "study-legacy" in ids and "study-broken" not in ids
    text = render(store_path, tmp_path / "out2", ["legacy"]).read_text(encoding="utf-8")
    assert "study-effect" not in Page(text).ids


def test_given_studies_are_rendered_without_importing_the_registry(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "droplab.studies", None)  # any import of it fails
    text = render(tmp_path / "none.db", tmp_path / "out", STUDIES[2:3]).read_text("utf-8")
    assert Page(text).ids.count("study-notrun") == 1
    with pytest.raises(ImportError):
        render(tmp_path / "none.db", tmp_path / "out", ["notrun"])


def test_bad_figure_and_bad_return_are_shown_not_raised(store_path, tmp_path):
    def bad_figure(frame):
        f = analyze_effect(frame)
        f.figures["oops"] = "not a figure"
        return f

    studies = [
        FakeStudy("effect", "q?", bad_figure),
        FakeStudy("broken", "q2?", lambda frame: {"verdict": "a dict"}),
    ]
    text = render(store_path, tmp_path / "out", studies).read_text(encoding="utf-8")
    assert "Figure failed: oops: TypeError" in text
    assert "expected droplab.findings.Findings" in _section(text, "broken")


def test_argument_errors(store_path, tmp_path):
    with pytest.raises(TypeError, match="studies must be a list"):
        render(store_path, tmp_path / "o", "effect")
    with pytest.raises(TypeError, match="store_path"):
        render(3, tmp_path / "o", STUDIES)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        render(store_path, tmp_path / "file", STUDIES)


def test_references_resolve():
    assert resolve("Srivastava et al. 2014") == "srivastava2014"
    assert resolve("Wager, Wang & Liang 2013") == "wager2013"
    assert resolve("Baldi & Sadowski (2013)") == "baldi2013"
    assert resolve("GAL2016") == "gal2016"
    assert resolve("Wei, Kakade & Ma 2020") == "wei2020"
    assert resolve("Tompson et al. 2015") == "tompson2015"
    assert resolve("Ghiasi et al. 2018") == "ghiasi2018"
    assert resolve("Greydanus 2020") == "greydanus2020"
    assert resolve("Srivastava 2015") is None and resolve("Hinton 2012") is None


def test_unavailable_study_modules_are_shown(tmp_path, monkeypatch):
    fake = types.ModuleType("droplab.studies")
    fake.REGISTRY = {}
    fake.UNAVAILABLE = {"conv": f"ImportError: no module {EVIL}"}
    monkeypatch.setitem(sys.modules, "droplab.studies", fake)
    text = render(tmp_path / "none.db", tmp_path / "out").read_text(encoding="utf-8")
    sec = _section(text, "conv")
    assert "unavailable" in sec and "ImportError: no module &lt;script&gt;" in sec


def test_long_and_multiindex_tables(store_path, tmp_path):
    def big(frame):
        f = analyze_effect(frame)
        f.figures = {}
        idx = pd.MultiIndex.from_product([range(30), range(10)], names=["a", "b"])
        f.table = pd.DataFrame({("err", "mean"): range(300)}, index=idx)
        return f

    index = render(store_path, tmp_path / "out", [FakeStudy("effect", "q?", big)])
    text = index.read_text(encoding="utf-8")
    assert '<th class="num">err / mean</th>' in text and "(100 more rows not shown)" in text
    md = (index.parent / "report.md").read_text(encoding="utf-8")
    assert "| a | b | err / mean |" in md and "|--:|--:|--:|" in md


def test_real_registry_renders_as_not_run_on_an_empty_store(tmp_path):
    from droplab import studies

    index = render(tmp_path / "empty.db", tmp_path / "out")
    ids = Page(index.read_text(encoding="utf-8")).ids
    for name in studies.REGISTRY:
        assert f"study-{name}" in ids
