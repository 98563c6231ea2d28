"""Open the rendered report in headless Chromium: every section and figure is there, every
image decoded, nothing was fetched or failed to load; keep a screenshot in test-artifacts/.

Skipped only when Chromium is absent and not in CI (CI=true installs it, see .ci/run).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import STUDIES

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
]

# Injected at the top of <head> of a copy of the page: records load errors (capture phase
# sees <img> errors, which do not bubble) and, after load, every image's decoded size, the
# resources the page fetched, the section ids and the page height, into <pre id=probe>.
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', function (e) {
  var t = e.target || {};
  window.__errors.push((t.tagName || 'script') + ': ' + (t.src || e.message || '?'));
}, true);
window.addEventListener('load', function () {
  var out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = JSON.stringify({
    images: Array.from(document.images).map(function (i) {
      return {alt: i.alt, complete: i.complete, w: i.naturalWidth, h: i.naturalHeight};
    }),
    resources: performance.getEntriesByType('resource').map(function (r) { return r.name; }),
    sections: Array.from(document.querySelectorAll('section.study')).map(function (s) {
      return s.id;
    }),
    links: Array.from(document.querySelectorAll('a[href^="#"]')).map(function (a) {
      return [a.getAttribute('href'), !!document.getElementById(a.getAttribute('href').slice(1))];
    }),
    errors: window.__errors,
    height: document.documentElement.scrollHeight
  });
  document.body.appendChild(out);
});
</script>"""


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("Chromium is not installed but CI=true: .ci/run must install it")
    pytest.skip("Chromium not installed (apt-get install chromium); required in CI")


def _run(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [chromium, *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


def test_report_loads_in_chromium(rendered, tmp_path):
    chromium = _chromium()
    _, index = rendered
    page = index.read_text(encoding="utf-8")
    probe_page = index.parent / "probe.html"
    probe_page.write_text(page.replace("<head>", "<head>\n" + PROBE, 1), encoding="utf-8")

    done = _run(
        chromium,
        tmp_path / "profile",
        "--window-size=1280,800",
        "--run-all-compositor-stages-before-draw",
        "--virtual-time-budget=10000",
        "--dump-dom",
        probe_page.as_uri(),
    )
    m = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert m, (
        f"probe missing from the DOM; chromium rc={done.returncode} stderr={done.stderr[-2000:]}"
    )
    probe = json.loads(html.unescape(m.group(1)))

    assert probe["sections"] == [f"study-{s.name}" for s in STUDIES]
    assert probe["errors"] == []
    assert probe["resources"] == []  # nothing fetched: everything is inline
    assert [i["alt"] for i in probe["images"]] == ["effect: error_vs_rate", "effect: error_bars"]
    for img in probe["images"]:
        assert img["complete"] and img["w"] > 0 and img["h"] > 0, img
    assert probe["links"] and all(ok for _, ok in probe["links"]), probe["links"]

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    height = max(800, min(int(probe["height"]) + 20, 12000))
    done = _run(
        chromium,
        tmp_path / "profile",
        f"--window-size=1280,{height}",
        f"--screenshot={shot}",
        index.as_uri(),
    )
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", done.stderr[-2000:]
    shutil.copy(index, ARTIFACTS / "report.html")
