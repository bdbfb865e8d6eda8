"""``render_report``: metrics.json (+ gallery images) -> report.html and report.md, no model needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resnet_apps.report import floor, results, sections
from resnet_apps.report.document import load_metrics, write_text_atomic
from resnet_apps.report.html import esc, page
from resnet_apps.report.markdown import report_markdown


def report_html(doc: dict[str, Any], run_dir: Path) -> str:
    """The complete self-contained HTML page for a validated metrics document."""
    run, ev = doc["run"], doc["evaluation"]
    parts: list[tuple[str, str, str]] = [
        (
            "headline",
            "Headline results",
            "".join(f'<p class="bad box">{esc(line)}</p>' for line in floor.flags(doc))
            + sections.headline(doc),
        ),
        ("floor", "Model vs trivial baseline floor", floor.floor_html(doc)),
        ("data-card", "Data card", sections.data_card(doc)),
        ("split", "Split, leakage check and class counts", sections.split(doc)),
        *(
            [("remote-sensing", "Remote sensing: grid, bands, area, legend", sections.remote_sensing(doc))]
            if doc.get("geo")
            else []
        ),
        ("training", "Training curves", sections.training(doc)),
        ("confusion", "Confusion matrix", results.confusion(ev)),
    ]
    if ev["kind"] == "classification":
        parts += [
            ("curves", "ROC and precision-recall curves", results.curves(ev)),
            ("calibration", "Calibration (reliability diagram)", results.calibration(ev)),
        ]
    parts.append(("per-class", "Per-class results", results.per_class(ev)))
    if ev["kind"] == "classification":
        parts += [
            ("operating-point", "Operating point and what it means", results.operating_point(ev)),
            ("gradcam", "Grad-CAM gallery: right and wrong cases", results.gradcam(doc, run_dir)),
        ]
    else:
        parts.append(("overlays", "Segmentation overlays", results.overlays(doc, run_dir)))
    parts += [
        ("skipped", "Skipped files", sections.skipped(doc)),
        ("reproducibility", "Reproducibility", sections.reproducibility(doc)),
    ]
    created = f", created {run['created']}" if run.get("created") else ""
    subtitle = f"{run['task']} ({ev.get('mode')}), recipe {run.get('recipe', '?')}{created}"
    return page(f"{run['name']}: evaluation report", subtitle, parts)


def render_report(run_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, Path]:
    """Re-validate ``RUN_DIR/metrics.json`` and write ``report.html`` and ``report.md``.

    Args:
        run_dir: a run directory holding metrics.json (gallery paths in it are relative to this folder).
        out_dir: where to write the two files; default ``run_dir``.

    Returns:
        {"html": path, "md": path}.

    Raises:
        ReportError: metrics.json missing or invalid (the message lists every problem with its field).
    """
    run_dir = Path(run_dir)
    doc = load_metrics(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir
    html_path = write_text_atomic(out / "report.html", report_html(doc, run_dir))
    md_path = write_text_atomic(out / "report.md", report_markdown(doc))
    return {"html": html_path, "md": md_path}
