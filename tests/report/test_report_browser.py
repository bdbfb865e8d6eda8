"""report.html in a real browser (headless Chromium): every image decodes, no console message, screenshot.

Two passes, because the report itself carries no script and its CSP forbids one:
1. a COPY of the page with a tiny probe script injected (CSP relaxed for inline script only) is loaded with
   --dump-dom; the probe writes, after the load event, which images failed to decode, any error events
   (resource errors included) and console.error / warn calls, and the page height, into a <pre>;
2. the ORIGINAL page is loaded with console logging on stderr (CSP violations, e.g. a network fetch, are
   logged as CONSOLE lines) and a 1280-px-wide screenshot of its full height is saved next to the report.
Skips with the reason when Chromium is not installed (.ci/run installs Debian's `chromium`).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_report_fixtures import binary_run, multiclass_run

from resnet_apps.report import render_report

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(BROWSER is None, reason="headless Chromium not installed (apt-get install chromium)"),
]

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--mute-audio",
]

PROBE = """<script>
window.__problems = [];
addEventListener('error', function (e) {
  var t = e.target || {}; window.__problems.push('error event: ' + (e.message || t.src || t.tagName || '?'));
}, true);
['error', 'warn'].forEach(function (k) { var f = console[k]; console[k] = function () {
  window.__problems.push('console.' + k + ': ' + Array.prototype.join.call(arguments, ' '));
  f.apply(console, arguments);
}; });
addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                   .map(function (i) { return (i.alt || '?') + ' ' + i.src.slice(0, 40); });
  var page = document.documentElement.clientWidth;
  var wide = Array.prototype.slice.call(document.querySelectorAll('table, figure, .scroll'))
                  .filter(function (el) { return el.getBoundingClientRect().right > page + 1 ||
                                                 el.scrollWidth > el.clientWidth + 1; }).length;
  var pre = document.createElement('pre'); pre.id = 'probe';
  pre.textContent = JSON.stringify({images: imgs.length, broken: broken, problems: window.__problems,
    height: document.documentElement.scrollHeight, width: page, overflowing: wide});
  document.body.appendChild(pre);
});
</script>"""


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BROWSER, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=120
    )


def _probe(html_path: Path, tmp_path: Path) -> dict:
    html = html_path.read_text()
    html = html.replace("default-src 'none';", "default-src 'none'; script-src 'unsafe-inline';", 1)
    html = html.replace("<head>", "<head>" + PROBE, 1)
    probe_page = tmp_path / "probe.html"
    probe_page.write_text(html)
    result = _chromium(
        ["--window-size=1280,900", "--virtual-time-budget=15000", "--dump-dom", probe_page.as_uri()],
        tmp_path / "profile-probe",
    )
    match = re.search(r'<pre id="probe">(.*?)</pre>', result.stdout, re.S)
    assert match, f"probe did not run; chromium stderr: {result.stderr[-1500:]}"
    return json.loads(
        match.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    )


@pytest.mark.parametrize("kind", ["binary", "multiclass"])  # gallery / 10 classes (widest tables)
def test_report_in_headless_chromium(kind: str, tmp_path: Path) -> None:
    run = (binary_run if kind == "binary" else multiclass_run)(tmp_path / "runs")
    html_path = render_report(run)["html"]
    found = _probe(html_path, tmp_path)
    assert found["images"] == (11 if kind == "binary" else 5)  # plots + Grad-CAM; multiclass: plots only
    assert found["broken"] == [] and found["problems"] == [], found
    assert found["overflowing"] == 0, "a table or figure is wider than the 1280-px window (cut off)"
    if kind != "binary":
        return  # one screenshot pass (the fullest report) keeps the suite fast
    # the original page, untouched: any console line (CSP violation, failed fetch) is a failure
    shot = run / f"report_screenshot_{kind}.png"
    height = min(int(found["height"]) + 40, 16000)
    result = _chromium(
        [
            "--enable-logging=stderr",
            "--v=0",
            f"--window-size=1280,{height}",
            f"--screenshot={shot}",
            html_path.as_uri(),
        ],
        tmp_path / "profile-shot",
    )
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    assert shot.is_file() and shot.stat().st_size > 50_000
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size == (1280, height)
    print(f"screenshot: {shot}")  # pytest keeps the last 3 tmp dirs: look at it
