"""Report figures as PNG bytes, drawn with matplotlib's object API on the Agg canvas.

matplotlib is imported inside each function (``import resnet_apps`` must not import it), and never through
pyplot, so no global backend state is touched and figures are freed when they go out of scope. Every axis
carries a label with its unit; probabilities and rates are fractions in [0, 1].
"""

from __future__ import annotations

import io
from typing import Any

DPI = 110
# line colours that stay distinguishable in print (matplotlib's tab10)
PALETTE = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
]


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)  # Figure.savefig uses the Agg canvas for png
    return buffer.getvalue()


def history_png(history: list[dict[str, Any]], metric_label: str = "validation metric") -> bytes | None:
    """Loss per epoch (train, validation) and the validation metric per epoch; None without history."""
    if not history:
        return None
    epochs = [h["epoch"] for h in history]
    fig = _figure(8.0, 3.0)
    loss_ax, metric_ax = fig.subplots(1, 2)
    for key, label, colour in (
        ("train_loss", "training", PALETTE[0]),
        ("val_loss", "validation", PALETTE[1]),
    ):
        values = [h.get(key) for h in history]
        if any(v is not None for v in values):
            loss_ax.plot(
                epochs,
                [float("nan") if v is None else v for v in values],
                "o-",
                ms=3,
                label=label,
                color=colour,
            )
    loss_ax.set_xlabel("epoch (count)")
    loss_ax.set_ylabel("loss (unitless, mean per image)")
    loss_ax.set_title("Loss")
    loss_ax.legend(fontsize=8)
    values = [h.get("val_metric") for h in history]
    metric_ax.plot(epochs, [float("nan") if v is None else v for v in values], "o-", ms=3, color=PALETTE[2])
    metric_ax.set_xlabel("epoch (count)")
    metric_ax.set_ylabel(f"{metric_label} (fraction)")
    metric_ax.set_title("Validation metric")
    for ax in (loss_ax, metric_ax):
        ax.grid(alpha=0.3)
    return _png(fig)


def confusion_png(matrix: list[list[int]], labels: list[str], unit: str = "images") -> bytes:
    """Row-normalised confusion matrix (share of each true class), annotated with counts."""
    import numpy as np

    cm = np.asarray(matrix, dtype=float)
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    k = len(labels)
    side = min(max(3.6, 0.55 * k + 2.2), 9.0)
    fig = _figure(side + 1.0, side)
    ax = fig.subplots()
    image = ax.imshow(share * 100, cmap="Blues", vmin=0, vmax=100)
    colorbar = fig.colorbar(image, ax=ax, shrink=0.8)
    colorbar.set_label("share of the true class (%)")
    ax.set_xticks(range(k), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), labels, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true (reference) class")
    ax.set_title(f"Confusion matrix (counts in {unit})", fontsize=10)
    if k <= 12:  # counts stay readable up to about a dozen classes
        for i in range(k):
            for j in range(k):
                count = int(cm[i, j])
                text = (
                    f"{count / 1e6:.1f}M"
                    if count >= 1e6
                    else f"{count / 1e3:.0f}k"
                    if count >= 1e4
                    else str(count)
                )
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if share[i, j] > 0.5 else "black",
                )
    return _png(fig)


def roc_png(curves: list[dict[str, Any]], title: str = "ROC curve") -> bytes | None:
    """ROC curves with AUROC in the legend and the chance diagonal; None without curves."""
    if not curves:
        return None
    fig = _figure(4.6, 4.2)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], ":", color="grey", label="chance (AUROC 0.5)")
    for i, c in enumerate(curves):
        auc = "n/a" if c.get("auc") is None else f"{c['auc']:.3f}"
        ax.plot(c["fpr"], c["tpr"], color=PALETTE[i % 10], lw=1.5, label=f"{c['label']} (AUROC {auc})")
    _unit_square(
        ax,
        "false positive rate = 1 - specificity (fraction)",
        "true positive rate = sensitivity (fraction)",
        title,
    )
    ax.legend(fontsize=7, loc="lower right")
    return _png(fig)


def pr_png(curves: list[dict[str, Any]], title: str = "Precision-recall curve") -> bytes | None:
    """Precision-recall curves with AP in the legend and each label's prevalence (chance level)."""
    if not curves:
        return None
    fig = _figure(4.6, 4.2)
    ax = fig.subplots()
    for i, c in enumerate(curves):
        ap = "n/a" if c.get("ap") is None else f"{c['ap']:.3f}"
        colour = PALETTE[i % 10]
        ax.plot(c["recall"], c["precision"], color=colour, lw=1.5, label=f"{c['label']} (AP {ap})")
        if c.get("prevalence") is not None and len(curves) <= 3:
            ax.axhline(c["prevalence"], ls=":", color=colour, lw=1)
    _unit_square(ax, "recall = sensitivity (fraction)", "precision = PPV (fraction)", title)
    ax.legend(fontsize=7, loc="lower left")
    return _png(fig)


def reliability_png(calibration: dict[str, Any]) -> bytes | None:
    """Reliability diagram: observed frequency per confidence bin against the diagonal, with bin counts."""
    bins = [b for b in calibration.get("bins", []) if b.get("count")]
    if not bins:
        return None
    fig = _figure(4.6, 4.2)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    conf = [b["mean_confidence"] for b in bins]
    freq = [b["observed_frequency"] for b in bins]
    ax.plot(conf, freq, "o-", color=PALETTE[3], label=f"model (ECE {calibration.get('ece', 0):.3f})")
    kind = calibration.get("kind", "")
    _unit_square(
        ax,
        "mean predicted probability (fraction)",
        "observed frequency (fraction)" + (", top label correct" if kind == "top-label" else ""),
        "Reliability diagram",
        square=False,
    )
    counts_ax = ax.twinx()
    width = 1.0 / calibration.get("n_bins", 10)
    counts_ax.bar(
        [b["lo"] + width / 2 for b in bins],
        [b["count"] for b in bins],
        width=width * 0.9,
        color="grey",
        alpha=0.2,
    )
    counts_ax.set_ylabel("predictions per bin (count)")
    ax.set_zorder(counts_ax.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.legend(fontsize=7, loc="upper left")
    return _png(fig)


def per_class_png(
    names: list[str],
    values: list[float | None],
    lows: list[float | None],
    highs: list[float | None],
    metric_label: str,
) -> bytes | None:
    """Horizontal bars of one per-class metric with its 95 % interval; None when nothing is defined."""
    if not any(v is not None for v in values):
        return None
    import numpy as np

    v = np.array([np.nan if x is None else x for x in values], dtype=float)
    lo = np.array([np.nan if x is None else x for x in lows], dtype=float)
    hi = np.array([np.nan if x is None else x for x in highs], dtype=float)
    fig = _figure(6.0, max(2.0, 0.3 * len(names) + 1.0))
    ax = fig.subplots()
    y = np.arange(len(names))
    err = np.vstack([np.nan_to_num(v - lo), np.nan_to_num(hi - v)])
    ax.barh(y, np.nan_to_num(v), xerr=err, color=PALETTE[0], alpha=0.8, capsize=2)
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"{metric_label} (fraction; bars: 95 % bootstrap CI)")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def _unit_square(ax: Any, xlabel: str, ylabel: str, title: str, square: bool = True) -> None:
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(title, fontsize=10)
    if square:  # not with a twin axis: matplotlib cannot keep both limits and the aspect
        ax.set_aspect("equal")
    ax.grid(alpha=0.3)
