"""Report sections about the model's results: confusion, curves, calibration, per-class table, operating
point, Grad-CAM gallery and segmentation overlays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resnet_apps.report import plots
from resnet_apps.report.html import data_uri, esc, figure, fmt, fmt_ci, sniff_mime, table

MAX_GALLERY_BYTES = 2_000_000  # a gallery image larger than this is a mistake (full scenes belong elsewhere)


def confusion(ev: dict[str, Any]) -> str:
    c = ev.get("confusion")
    if not c:
        return '<p class="note">No confusion matrix for this task (multi-label: see the per-label table).</p>'
    unit = c.get("unit", "images")
    out = figure(
        plots.confusion_png(c["matrix"], c["labels"], unit),
        "confusion matrix",
        f"Rows: true class; columns: predicted class; colour: share of the row; numbers: {unit}.",
    )
    k = len(c["labels"])
    if k <= 12:
        # beyond 4 classes the columns are numbered so that the table fits the page width
        short = k > 4
        heads = [str(j + 1) for j in range(k)] if short else c["labels"]
        rows = [
            [f"{i + 1}. {label}" if short else label, *map(fmt, row)]
            for i, (label, row) in enumerate(zip(c["labels"], c["matrix"], strict=False))
        ]
        out += table(["true \\ predicted", *heads], rows, numeric=set(range(1, k + 1)))
    return out


def curves(ev: dict[str, Any]) -> str:
    cv = ev.get("curves") or {}
    kind = {"one-vs-rest": " (each class against all others)", "per-label": " (one curve per label)"}.get(
        cv.get("kind", ""), ""
    )
    out = figure(
        plots.roc_png(cv.get("roc") or [], "ROC curve" + ("s" if len(cv.get("roc") or []) > 1 else "")),
        "ROC curves",
        f"Receiver operating characteristic{kind}.",
    )
    out += figure(
        plots.pr_png(cv.get("pr") or []),
        "precision-recall curves",
        f"Precision against recall{kind}; dotted line: prevalence (a random ranking).",
    )
    return out or '<p class="note">No curve could be drawn (a class is absent from the test set).</p>'


def calibration(ev: dict[str, Any]) -> str:
    cal = ev.get("calibration")
    if not cal:
        return '<p class="note">No calibration data for this task.</p>'
    what = {
        "top-label": "the probability of the predicted class against how often it is right",
        "positive-class": "the predicted probability of the positive class against how often it is positive",
    }
    meaning = what.get(
        cal.get("kind", ""), "each label's predicted probability against its observed frequency"
    )
    out = figure(
        plots.reliability_png(cal),
        "reliability diagram",
        f"Reliability: {meaning}. Grey bars: number of predictions per bin.",
    )
    out += (
        f"<p>Expected calibration error (ECE, {cal.get('n_bins', 10)} equal-width bins): "
        f"<strong>{fmt(cal.get('ece'))}</strong>; Brier score: <strong>{fmt(cal.get('brier'))}</strong> "
        "(both 0 for a perfectly calibrated, perfect model).</p>"
    )
    return out


def per_class(ev: dict[str, Any]) -> str:
    rows_in = ev.get("per_class") or []
    if not rows_in:
        return ""
    mode = ev.get("mode")
    if mode == "segmentation":
        headers = ["Class", "Pixels (reference)", "IoU (95 % CI)", "Dice", "Producer's acc.", "User's acc."]
        rows = [
            [
                r["class"],
                fmt(r["pixels"]),
                fmt_ci(r, "iou", "iou_ci_low", "iou_ci_high"),
                fmt(r["dice"]),
                fmt(r["producers_accuracy"]),
                fmt(r["users_accuracy"]),
            ]
            for r in rows_in
        ]
        bars = ("iou", "iou_ci_low", "iou_ci_high", "IoU")
    elif mode == "multilabel":
        headers = [
            "Label",
            "Positives",
            "Known",
            "Missing (masked)",
            "AUROC (95 % CI)",
            "AP (95 % CI)",
            "Threshold",
            "Sensitivity",
            "Specificity",
            "PPV",
            "NPV",
        ]
        rows = [
            [
                r["class"],
                fmt(r["support"]),
                fmt(r["known"]),
                fmt(r["missing"]),
                fmt_ci(r, "auroc", "auroc_ci_low", "auroc_ci_high"),
                fmt_ci(r, "average_precision", "ap_ci_low", "ap_ci_high"),
                fmt(r["threshold"]),
                fmt(r["sensitivity"]),
                fmt(r["specificity"]),
                fmt(r["ppv"]),
                fmt(r["npv"]),
            ]
            for r in rows_in
        ]
        bars = ("auroc", "auroc_ci_low", "auroc_ci_high", "AUROC")
    else:
        headers = [
            "Class",
            "Support",
            "Predicted",
            "Precision = user's acc.",
            "Recall = producer's acc.",
            "F1",
        ]
        rows = [
            [
                r["class"],
                fmt(r["support"]),
                fmt(r["predicted"]),
                fmt(r["precision"]),
                fmt(r["recall"]),
                fmt(r["f1"]),
            ]
            for r in rows_in
        ]
        if any("auroc_ovr" in r for r in rows_in):
            headers.append("AUROC (one-vs-rest)")
            for row, r in zip(rows, rows_in, strict=False):
                row.append(fmt(r.get("auroc_ovr")))
        bars = None
    out = table(headers, rows, numeric=set(range(1, len(headers))))
    if bars:
        key, low, high, label = bars
        out += figure(
            plots.per_class_png(
                [r["class"] for r in rows_in],
                [r.get(key) for r in rows_in],
                [r.get(low) for r in rows_in],
                [r.get(high) for r in rows_in],
                label,
            ),
            f"per-class {label}",
            f"{label} per class with its 95 % bootstrap interval.",
        )
    if mode in ("multiclass", "segmentation"):
        out += (
            '<p class="note">Producer\'s accuracy = share of the reference of a class that was mapped '
            "correctly (1 − omission error); user's accuracy = share of the map's labels of that class "
            "that are correct (1 − commission error).</p>"
        )
    return out


def operating_point(ev: dict[str, Any]) -> str:
    points = [ev["operating_point"]] if ev.get("operating_point") else ev.get("operating_points") or []
    if not points:
        return (
            '<p class="note">Not applicable: the predicted class is the most probable one (no threshold).</p>'
        )
    out = ""
    for p in points[:20]:
        source = p.get("source", "")
        origin = (
            "chosen on the validation split and applied unchanged to this split"
            if source == "validation"
            else esc(source)
        )
        out += f'<p class="sentence">{esc(p["sentence"])}</p>'
        out += (
            f'<p class="note">Threshold {fmt(p["threshold"])} ({origin}). TP {p["tp"]}, FP {p["fp"]}, '
            f"TN {p['tn']}, FN {p['fn']}; sensitivity {fmt(p['sensitivity'])}, specificity "
            f"{fmt(p['specificity'])}, PPV {fmt(p['ppv'])}, NPV {fmt(p['npv'])}.</p>"
        )
    if len(points) > 20:
        out += f'<p class="note">{len(points) - 20} more labels in the per-label table.</p>'
    return out


def _embed(run_dir: Path, rel: str) -> tuple[str | None, str]:
    """A data URI for a gallery file inside the run directory, or (None, why not)."""
    path = (run_dir / rel).resolve()
    if run_dir.resolve() not in path.parents:
        return None, "outside the run directory"
    if not path.is_file():
        return None, "file missing"
    data = path.read_bytes()
    mime = sniff_mime(data)
    if mime is None:
        return None, "not a PNG or JPEG"
    if len(data) > MAX_GALLERY_BYTES:
        return None, f"larger than {MAX_GALLERY_BYTES // 1_000_000} MB"
    return data_uri(data, mime), ""


def _gallery(run_dir: Path, items: list[dict[str, Any]], caption_of: Any, css: str = "gallery") -> str:
    figures, missing = [], []
    for item in items:
        uri, why = _embed(run_dir, item["image"])
        if uri is None:
            missing.append(f"{item['image']} ({why})")
            continue
        cap = caption_of(item)
        figures.append(
            f'<figure><img src="{uri}" alt="{esc(cap)}"><figcaption>{esc(cap)}</figcaption></figure>'
        )
    out = f'<div class="{css}">{"".join(figures)}</div>'
    if missing:
        out += f'<p class="warn box">Images that could not be embedded: {esc("; ".join(missing))}.</p>'
    return out


def gradcam(doc: dict[str, Any], run_dir: Path) -> str:
    items = doc.get("gradcam") or []
    if not items:
        return '<p class="note">No Grad-CAM images were recorded for this run.</p>'

    def caption(item: dict[str, Any]) -> str:
        verdict = "right" if item.get("correct") else "wrong"
        prob = ""
        if isinstance(item.get("prob"), (int, float)):
            whose = item.get("score_of")
            prob = f", p({whose}) {item['prob']:.2f}" if whose else f", score {item['prob']:.2f}"
        return f"{verdict}: true {item.get('true', '?')}, predicted {item.get('pred', '?')}{prob}"

    right = [i for i in items if i.get("correct")]
    wrong = [i for i in items if not i.get("correct")]
    out = (
        '<p class="note">Grad-CAM heat maps (MONAI GradCAM on the last ResNet stage): red areas raised the '
        "score of the predicted class. They show where the model looked, not why it is right. "
        "p(CLASS) is the model's probability of that class (binary: of the positive class, whatever was "
        "predicted at the operating threshold).</p>"
    )
    if right:
        out += "<h3>Right</h3>" + _gallery(run_dir, right, caption)
    if wrong:
        out += "<h3>Wrong</h3>" + _gallery(run_dir, wrong, caption)
    return out


def overlays(doc: dict[str, Any], run_dir: Path) -> str:
    items = doc.get("overlays") or []
    if not items:
        return '<p class="note">No overlays were recorded for this run.</p>'
    # overlays are wider (reference | prediction side by side): two per row
    return _gallery(run_dir, items, lambda item: item.get("caption", item["image"]), "gallery wide")
