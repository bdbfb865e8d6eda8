"""report.md and comparison.md show recipe text (anchor source, protocol, run name) as text, never as HTML."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the report fixtures beside the other tests
from test_report_fixtures import binary_run  # noqa: E402

from resnet_apps.report import compare_runs, load_metrics, render_report, write_metrics  # noqa: E402
from resnet_apps.report.markdown import md_text, report_markdown  # noqa: E402

HOSTILE = {
    "source": '<img src=x onerror="alert(1)">',
    "protocol": "<script>alert(document.cookie)</script> | split",
    "name": "<b onmouseover=alert(2)>run</b>",
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<script>x</script>", "&lt;script&gt;x&lt;/script&gt;"),
        ("a | b", "a \\| b"),  # a pipe would split a table cell
        ("two\nlines", "two lines"),
        ("AT&T", "AT&amp;T"),
        ("plain", "plain"),
    ],
)
def test_md_text(text: str, expected: str) -> None:
    assert md_text(text) == expected


def _hostile_run(root: Path, name: str) -> Path:
    run = binary_run(root, name)
    doc = load_metrics(run)
    doc["run"]["name"] = HOSTILE["name"]
    doc["anchor"] = dict(doc["anchor"], source=HOSTILE["source"], protocol=HOSTILE["protocol"])
    write_metrics(run, doc)
    return run


def _assert_inert(text: str) -> None:
    for raw in ("<img", "<script", "<b ", "</b>"):  # no tag survives; its text is harmless
        assert raw not in text, raw
    assert "&lt;img src=x onerror=" in text or "&lt;b onmouseover" in text


def test_report_md_escapes_recipe_html(tmp_path: Path) -> None:
    run = _hostile_run(tmp_path, "hostile")
    text = report_markdown(load_metrics(run))
    _assert_inert(text)
    assert (
        "&lt;img src=x onerror=" in text and "&lt;script&gt;alert(document.cookie)&lt;/script&gt; \\|" in text
    )
    render_report(run)
    _assert_inert((run / "report.md").read_text())


def test_comparison_md_escapes_run_names(tmp_path: Path) -> None:
    a, b = _hostile_run(tmp_path, "a"), binary_run(tmp_path, "b", skill=0.3)
    paths = compare_runs(a, b, out_dir=tmp_path / "cmp", n_boot=20)
    text = Path(paths["md"]).read_text()
    _assert_inert(text)
    assert "&lt;b onmouseover=alert(2)&gt;run&lt;/b&gt;" in text
