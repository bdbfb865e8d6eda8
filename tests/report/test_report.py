"""render_report: sections, escaping, self-containment, validation errors, CLI, the no-torch layer rule."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_report_fixtures import binary_run, multiclass_run, multilabel_run, segmentation_run

from resnet_apps.cli import main
from resnet_apps.errors import ReportError
from resnet_apps.report import load_metrics, render_report, results, sections, validate_metrics, write_metrics
from resnet_apps.report.markdown import report_markdown
from resnet_apps.report.md_render import markdown_to_html


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    return {
        "binary": binary_run(root),
        "multiclass": multiclass_run(root),
        "multilabel": multilabel_run(root),
        "segmentation": segmentation_run(root),
    }


def _imgs(html: str) -> list[str]:
    return re.findall(r'<img src="([^"]*)"', html)


def test_binary_report_sections_and_self_contained(runs: dict[str, Path], tmp_path: Path) -> None:
    # re-rendered from metrics.json + gallery alone, in a fresh folder: no model, nothing else
    copy = tmp_path / "copy"
    shutil.copytree(runs["binary"], copy)
    paths = render_report(copy)
    html = paths["html"].read_text()
    for title in (
        "Headline results",
        "Data card",
        "Split, leakage check and class counts",
        "Training curves",
        "Confusion matrix",
        "ROC and precision-recall curves",
        "Calibration (reliability diagram)",
        "Per-class results",
        "Operating point and what it means",
        "Grad-CAM gallery",
        "Skipped files",
        "Reproducibility",
    ):
        assert f">{title}" in html, title
    images = _imgs(html)
    # 5 plots (history, confusion, ROC, PR, reliability) + 6 Grad-CAM images, all inlined
    assert len(images) == 11 and all(src.startswith("data:image/png;base64,") for src in images)
    assert "http://" not in html.replace('href="https://data.mendeley.com', "")
    assert "<script" not in html.lower()  # no script at all (and the card's <script> is escaped)
    assert "&lt;script&gt;alert(&quot;card&quot;)&lt;/script&gt;" in html
    assert "javascript:" not in html  # the unsafe link lost its href
    assert "Content-Security-Policy" in html and "@media print" in html
    # anchor beside ours, with its protocol; the operating-point sentence; leakage check; skipped file escaped
    assert "0.968" in html and "official 624-image test split" in html
    assert '<th class="num">Validation</th>' in html  # validation values beside the test ones
    assert re.search(r"At threshold [0-9.]+, 96 % of PNEUMONIA cases are flagged", html)
    assert "Leakage check passed" in html and "IM-0001 &lt;corrupt&gt;.jpeg" in html
    assert "ImageNet-pretrained weights were used" in html
    md = paths["md"].read_text()
    assert "| AUROC |" in md and "0.968" in md and "PNEUMONIA cases are flagged" in md


def test_scratch_run_says_so_and_failed_leakage_is_loud(runs: dict[str, Path]) -> None:
    doc = load_metrics(runs["binary"])
    doc["reproducibility"].update(imagenet_weights_used=False, weights_source="none")
    doc["split"]["leakage"] = {"ok": False, "offending_groups": ["3f9a0c1d2e4b5a69"]}
    html = sections.reproducibility(doc) + sections.split(doc)  # the sections alone: no plots needed
    assert "ImageNet weights were NOT used" in html and "Leakage check FAILED" in html
    assert "3f9a0c1d2e4b5a69" in html
    md = report_markdown(doc)
    assert "ImageNet weights were NOT used" in md and "Leakage check FAILED" in md


def test_other_tasks_render(runs: dict[str, Path], tmp_path: Path) -> None:
    html = render_report(runs["multiclass"], tmp_path / "mc")["html"].read_text()
    assert "Recall = producer&#x27;s acc." in html and "Cohen&#x27;s kappa" in html and "0.991" in html
    assert "HerbaceousVegetation" in html and (tmp_path / "mc" / "report.md").is_file()
    html = render_report(runs["segmentation"], tmp_path / "seg")["html"].read_text()
    assert "Mean IoU" in html and "Segmentation overlays" in html and 'id="curves"' not in html
    assert len(_imgs(html)) == 5  # history, confusion, per-class IoU bars, 2 overlays


def test_missing_gallery_image_is_reported_not_broken(runs: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(runs["binary"], copy)
    (copy / "gallery" / "cam_00.png").unlink()
    (copy / "gallery" / "cam_01.png").write_text("not an image")
    html = results.gradcam(load_metrics(copy), copy)
    assert "gallery/cam_00.png (file missing)" in html and "gallery/cam_01.png (not a PNG or JPEG)" in html
    assert len(_imgs(html)) == 4


def _valid_doc(runs: dict[str, Path]) -> dict:
    return json.loads((runs["segmentation"] / "metrics.json").read_text())


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("evaluation"), "evaluation: missing"),  # no test results at all
        (lambda d: d.update(schema_version=2), "schema_version: 2"),  # written by a future version
        (lambda d: d["run"].update(task="detection"), "run: expected"),  # unknown task
        (lambda d: d["evaluation"]["headline"][0].update(value="high"), "headline[0].value"),  # not a number
        (lambda d: d["overlays"][0].update(image="/etc/passwd"), "overlays[0].image"),  # absolute path
        (lambda d: d["overlays"][0].update(image="../other/x.png"), "no '..'"),  # escapes the run dir
        (lambda d: d["evaluation"]["confusion"].update(matrix=[[1]]), "square"),  # wrong confusion shape
        (lambda d: d.update(skipped=[{"path": "a.dcm"}]), "skipped[0]"),  # reason missing
        (lambda d: d.update(history=[{"loss": 1}]), "history"),  # epoch missing
    ],
)
def test_validation_names_the_field(runs: dict[str, Path], edit, message: str) -> None:  # noqa: ANN001
    doc = _valid_doc(runs)
    edit(doc)
    with pytest.raises(ReportError, match=re.escape(message)):
        validate_metrics(doc)


def test_write_and_load_metrics(runs: dict[str, Path], tmp_path: Path) -> None:
    import numpy as np

    doc = _valid_doc(runs)
    doc["evaluation"]["headline"][0]["value"] = np.float32("nan")  # NaN / numpy become strict JSON
    doc["split"] = {"counts": {"test": {"a": np.int64(3)}}}
    path = write_metrics(tmp_path, doc)
    assert json.loads(path.read_text())["evaluation"]["headline"][0]["value"] is None
    assert load_metrics(tmp_path)["split"]["counts"]["test"]["a"] == 3
    with pytest.raises(ReportError, match="not found"):
        load_metrics(tmp_path / "nowhere")
    (tmp_path / "metrics.json").write_text("{not json")
    with pytest.raises(ReportError, match="not valid JSON"):
        load_metrics(tmp_path)
    with pytest.raises(ReportError, match="evaluation: missing"):
        write_metrics(tmp_path / "bad", {"run": {"name": "x", "task": "classification"}})
    assert not (tmp_path / "bad" / "metrics.json").exists()


@pytest.mark.parametrize(
    ("metric", "mode_names", "row"),
    [
        ("auroc", ["macro_auroc", "brier"], "macro_auroc"),  # multi-label reports the macro mean
        ("auroc", ["auroc", "average_precision"], "auroc"),  # binary: itself
        ("iou", ["miou", "pixel_accuracy"], "miou"),
        ("accuracy", ["accuracy", "kappa"], "accuracy"),
        ("top5", ["accuracy"], None),  # no such row: shown in the note only
    ],
)
def test_anchor_row(metric: str, mode_names: list[str], row: str | None) -> None:
    ev = {"headline": [{"name": n} for n in mode_names]}
    assert sections.anchor_row(ev, {"metric": metric}) == row


def test_interval_cells() -> None:
    assert sections._ci_cell({"ci_low": 0.1, "ci_high": 0.25}) == "0.100 – 0.250"
    # every resample lost a class: say so rather than show an empty interval
    assert sections._ci_cell({"ci_low": None, "ci_high": None, "n_valid": 0, "n_skipped": 200}) == (
        "undefined in every resample"
    )
    assert (
        sections._ci_cell({"ci_low": None, "ci_high": None, "n_valid": 0, "n_skipped": 0}) == "–"
    )  # n_boot 0


def test_markdown_converter_is_safe_and_simple() -> None:
    html = markdown_to_html(
        "# T\n\nA **b** *c* `<d>` [e](https://x.org) [f](javascript:alert(1))\n\n"
        "- one\n- two\n\n1. first\n\n| a | b |\n|---|---|\n| 1 | <i> |\n\n```\n<x>\n```"
    )
    assert "<h3>T</h3>" in html and "<strong>b</strong>" in html and "<em>c</em>" in html
    assert "<code>&lt;d&gt;</code>" in html and '<a href="https://x.org">e</a>' in html
    assert "javascript" not in html and " f " in html.replace("f<", " f <").replace(">f", "> f ")
    assert "<ul><li>one</li><li>two</li></ul>" in html and "<ol><li>first</li></ol>" in html
    assert "<td>&lt;i&gt;</td>" in html and "<pre><code>&lt;x&gt;</code></pre>" in html


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["report", str(tmp_path / "missing")]) == 2  # typed error: message, no traceback
    assert "metrics.json" in capsys.readouterr().err


@pytest.mark.subprocess
def test_cli_in_a_subprocess_keeps_the_layer_rules(runs: dict[str, Path], tmp_path: Path) -> None:
    # `resnet-apps report` end to end in a fresh interpreter: no torch, and matplotlib only once plotting
    code = (
        "import sys, resnet_apps\n"
        "assert 'matplotlib' not in sys.modules, 'import resnet_apps imported matplotlib'\n"
        "import resnet_apps.report, resnet_apps.metrics, resnet_apps.cli\n"
        "assert 'matplotlib' not in sys.modules, 'importing the report imported matplotlib'\n"
        f"argv = ['report', {str(runs['multilabel'])!r}, '--out', {str(tmp_path)!r}]\n"
        "assert resnet_apps.cli.main(argv) == 0\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "assert not bad, bad[:3]\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "html:" in result.stdout
    html = (tmp_path / "report.html").read_text()
    assert "Missing (masked)" in html and "Macro AUROC" in html and html.count('class="sentence"') == 5


def test_report_says_what_was_run_and_stays_quiet_without_anchor_or_groups(runs: dict[str, Path]) -> None:
    doc = load_metrics(runs["binary"])
    doc["run"].update(backbone="resnet18", image_size=128, epochs_run=3, best_epoch=2,
                      overrides=["model.backbone=resnet18", "data.image_size=128"])  # fmt: skip
    doc["reproducibility"].update(imagenet_weights_used=False, weights_source="none")
    doc["anchor"] = {"metric": None, "value": None, "source": None, "protocol": None}
    doc["split"].update(method="stratified", groups={})
    doc["split"]["leakage"] = {"ok": True, "offending_groups": []}
    html = sections.headline(doc) + sections.split(doc)
    # the header names the backbone, size, weights, epochs and every --set, not just the recipe's name
    assert "backbone resnet18; image size 128 px; weights: random init; 3 epoch(s) run, best epoch 2" in html
    assert "--set model.backbone=resnet18 --set data.image_size=128" in html
    # beside the headline numbers, before the table
    assert html.index("ImageNet weights were NOT used") < html.index("<table")
    assert "Anchor:" not in html and "names no published anchor" in html
    assert "No groups" in html and "Leakage check passed" not in html
    md = report_markdown(doc)
    assert "Anchor:" not in md and "backbone resnet18" in md
    assert md.index("ImageNet weights were NOT used") < md.index("| Metric |")


def test_intervals_from_few_units_are_flagged_in_the_table(runs: dict[str, Path]) -> None:
    doc = load_metrics(runs["binary"])
    doc["evaluation"]["bootstrap"].update(n_units=12, unit="group")
    table_html = sections.headline(doc).split("<table", 1)[1]
    assert "⚠ only 12 groups" in table_html
    assert "⚠ only 12 groups |" in report_markdown(doc)
    doc["evaluation"]["bootstrap"].update(n_units=80)
    assert "⚠" not in sections.headline(doc) and "⚠" not in report_markdown(doc)


def test_remote_sensing_section_from_a_trained_geotiff_run(tmp_path: Path) -> None:
    """A user's view: train on generated GeoTIFF chips, then read the report's remote-sensing facts."""
    from train_fixtures import make_geotiff_folder, write_recipe

    data = make_geotiff_folder(tmp_path / "data", per_class=4, size=16)
    recipe = write_recipe(tmp_path / "r.yaml", data, train={"epochs": 1}, eval={"bootstrap": 0})
    run = tmp_path / "run"
    assert main(["train", str(recipe), "--set", "data.image_size=16", "--out", str(run)]) == 0
    doc = load_metrics(run)
    geo = doc["geo"]
    assert geo["crs"] == ["EPSG:32632"] and geo["resolution"] == [[10.0, 10.0]] and geo["units"] == "metre"
    n_test = sum(doc["split"]["counts"]["test"].values())
    assert geo["area_km2"] == pytest.approx(n_test * 16 * 16 * 100 / 1e6)
    html = (run / "report.html").read_text()
    assert "Remote sensing: grid, bands, area, legend" in html and "EPSG:32632" in html
    assert (
        "neighbouring chips may sit in different splits" in html
    )  # a stratified split has no spatial groups
    assert "Class map legend" in html and "background:rgb(228,26,28)" in html
