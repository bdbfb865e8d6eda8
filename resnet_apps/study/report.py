"""The degradation study's report: Fig. 6 layout, final table over seeds, gradient norms, the paper beside ours.

One self-contained HTML page (the project's page shell, PNGs inlined) plus ``fig6.png`` and
``gradnorm.png`` beside it. No torch here: everything comes from study.json.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

from resnet_apps.report.html import esc, figure, page, table
from resnet_apps.report.plots import DPI, PALETTE


def _new_figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _to_png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _mean_curve(net: dict[str, Any], key: str) -> tuple[list[int], list[float]]:
    """Epochs and the mean of ``key`` over the seeds that reached each epoch."""
    by_epoch: dict[int, list[float]] = {}
    for doc in net["seeds"].values():
        for entry in doc["history"]:
            by_epoch.setdefault(entry["epoch"], []).append(float(entry[key]))
    epochs = sorted(by_epoch)
    return epochs, [sum(by_epoch[e]) / len(by_epoch[e]) for e in epochs]


def fig6_png(doc: dict[str, Any]) -> bytes:
    """The paper's Fig. 6 layout: plain nets left, residual right; training error dashed, test error solid (%)."""
    fig = _new_figure(10.0, 3.8)
    axes = fig.subplots(1, 2, sharey=True)
    networks = doc["networks"]
    depths = sorted({n["depth"] for n in networks.values()})
    for ax, residual, title in ((axes[0], False, "plain"), (axes[1], True, "ResNet")):
        for index, depth in enumerate(depths):
            name = f"{'resnet' if residual else 'plain'}-{depth}"
            if name not in networks:
                continue
            colour = PALETTE[index % len(PALETTE)]
            epochs, train = _mean_curve(networks[name], "train_error")
            _, test = _mean_curve(networks[name], "test_error")
            ax.plot(epochs, [100 * v for v in train], "--", color=colour, lw=1.2)
            ax.plot(epochs, [100 * v for v in test], "-", color=colour, lw=2.0, label=f"{title}-{depth}")
        ax.set_title(f"{title} nets (mean over seeds)")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, title="dashed: training, solid: test", title_fontsize=8)
    axes[0].set_ylabel("error (%)")
    return _to_png(fig)


def gradnorm_png(doc: dict[str, Any]) -> bytes:
    """Left: per-layer gradient norm at the first step by layer index. Right: first-conv norm per epoch."""
    fig = _new_figure(10.0, 3.8)
    profile_ax, epoch_ax = fig.subplots(1, 2)
    grads = doc["summary"]["gradient_norm_by_depth"]
    order = sorted(grads, key=lambda n: (grads[n]["residual"], grads[n]["depth"]))
    for index, name in enumerate(order):
        colour = PALETTE[index % len(PALETTE)]
        style = "-" if grads[name]["residual"] else "--"
        point = grads[name]["points"].get("first step")
        if point:
            profile_ax.plot(
                range(1, len(point["by_layer"]) + 1), point["by_layer"], style, color=colour, label=name
            )
        epochs, norms = _mean_curve(doc["networks"][name], "grad_norm_first_conv")
        epoch_ax.plot(epochs, norms, style, color=colour, marker="o", ms=3, label=name)
    profile_ax.set_yscale("log")
    profile_ax.set_xlabel("convolution index (1 = first conv, input side)")
    profile_ax.set_ylabel("weight-gradient L2 norm")
    profile_ax.set_title("gradient norm by layer, first step")
    epoch_ax.set_yscale("log")
    epoch_ax.set_xlabel("epoch")
    epoch_ax.set_ylabel("first-conv gradient norm (epoch mean)")
    epoch_ax.set_title("first convolution over training")
    for ax in (profile_ax, epoch_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _to_png(fig)


def _pct(stats: dict[str, Any] | None) -> str:
    """'12.3 ± 0.4 (11.4–13.2)' in percent from a mean_interval dict."""
    if not stats or stats.get("mean") is None:
        return "–"
    text = f"{100 * stats['mean']:.2f}"
    if stats.get("std") is not None:
        text += f" ± {100 * stats['std']:.2f} ({100 * stats['ci_low']:.2f} – {100 * stats['ci_high']:.2f})"
    return text


def final_table(doc: dict[str, Any]) -> str:
    rows = []
    for name, row in doc["summary"]["final"].items():
        repro = row.get("reproduction_test_error_percent")
        rows.append(
            [
                name,
                f"{row['params'] / 1e6:.2f} M",
                row["train_error_clean"]["n"],
                _pct(row["train_error_clean"]),
                _pct(row["train_error"]),
                _pct(row["test_error"]),
                "–"
                if row.get("paper_test_error_percent") is None
                else f"{row['paper_test_error_percent']:.2f}",
                "–" if repro is None else f"{repro['mean']:.2f} ± {repro['std']:.2f}",
            ]
        )
    headers = [
        "network",
        "params",
        "seeds",
        "final training error, clean (%)",
        "final training error, running (%)",
        "final test error (%)",
        "paper, CIFAR-10 test (%)",
        "5-seed reproduction, CIFAR-10 test (%)",
    ]
    return table(headers, rows, numeric={1, 2, 3, 4, 5, 6, 7})


def ordering_html(doc: dict[str, Any]) -> str:
    rows = []
    for row in doc["summary"]["ordering"] + doc["summary"]["ordering_test"]:
        interval = (
            "–" if row.get("ci_low") is None else f"{100 * row['ci_low']:+.2f} – {100 * row['ci_high']:+.2f}"
        )
        rows.append(
            [
                f"{row['deep']} − {row['shallow']}",
                row["metric"],
                len(row["seeds"]),
                "–" if row.get("mean") is None else f"{100 * row['mean']:+.2f}",
                interval,
                row["paper_expects"],
                row["found"],
            ]
        )
    headers = ["difference", "final metric", "seeds", "mean (points)", "95 % t interval", "paper", "found"]
    return table(headers, rows, numeric={2, 3, 4})


def shortcut_html(doc: dict[str, Any]) -> str:
    """Residual minus plain at the same depth (same seeds): what the shortcuts alone change."""
    rows = []
    for row in doc["summary"].get("shortcut_effect", []):
        interval = (
            "–" if row.get("ci_low") is None else f"{100 * row['ci_low']:+.2f} – {100 * row['ci_high']:+.2f}"
        )
        mean = "–" if row.get("mean") is None else f"{100 * row['mean']:+.2f}"
        rows.append([f"{row['residual']} − {row['plain']}", row["metric"], len(row["seeds"]), mean, interval])
    if not rows:
        return ""
    headers = ["difference", "final metric", "seeds", "mean (points)", "95 % t interval"]
    return "<h3>Shortcuts at equal depth and parameter count</h3>" + table(headers, rows, numeric={2, 3, 4})


def claim_sentence(doc: dict[str, Any]) -> str:
    """The ordering found on the primary metric (clean final training error), in words."""
    parts = []
    for row in doc["summary"]["ordering"]:
        if row["metric"] != "train_error_clean" or row.get("mean") is None:
            continue
        interval = (
            ""
            if row.get("ci_low") is None
            else f", 95 % interval {100 * row['ci_low']:+.2f} to {100 * row['ci_high']:+.2f}"
        )
        parts.append(
            f"{row['deep']} minus {row['shallow']} final training error: {100 * row['mean']:+.2f} points "
            f"over {len(row['seeds'])} seeds{interval} → {row['found']}."
        )
    return " ".join(parts) or "No complete pair of depths yet."


def report_html(doc: dict[str, Any], fig6: bytes, grads: bytes) -> str:
    data, config, timing = doc["data"], doc["config"], doc["timing"]
    protocol = config["protocol"]
    setup = (
        f"<p>Data: <code>{esc(data['root'])}</code>, {len(data['classes'])} classes, resized to "
        f"{data['image_size']} px, {esc(data['split'])}: {data['n_train']} training and {data['n_test']} test "
        f"images. Protocol (He et al. 2016, Section 4.2, scaled): SGD momentum {protocol['momentum']}, weight decay "
        f"{protocol['weight_decay']}, batch {protocol['batch_size']}, lr {protocol['lr']} divided by 10 at 50 % and "
        f"75 % of {protocol['epochs']} epochs, 4-px padding + random 32-px crop"
        f"{' + horizontal flip' if protocol['flip'] else ' (no flip)'}; seeds {esc(config['seeds'])}.</p>"
        f"<p>Wall time {timing['wall_seconds'] / 60:.1f} min ({timing['jobs']} process(es) × "
        f"{timing['threads_per_job']} thread(s), {esc(timing['cpu'])}).</p>"
    )
    honest = (
        '<p class="box warn">Our data is not CIFAR-10: compare the ordering, not the values. The paper trains '
        "64k iterations on 50k images; this study trains far fewer steps on a few thousand images, so absolute "
        "errors are not comparable.</p>"
    )
    sections = [
        (
            "claim",
            "The claim, tested",
            f'<p class="sentence">{esc(claim_sentence(doc))}</p>{ordering_html(doc)}{shortcut_html(doc)}{honest}',
        ),
        (
            "fig6",
            "Training and test error (Fig. 6 layout)",
            figure(
                fig6, "error curves", "dashed: training error (running, augmented batches); solid: test error"
            ),
        ),
        (
            "table",
            "Final errors over seeds, beside the paper",
            final_table(doc)
            + f"<p class='note'>{esc(doc['summary']['interval'])}; 'clean' = eval mode on the un-augmented "
            "training split.</p>",
        ),
        (
            "gradients",
            "Gradient norm by depth",
            figure(grads, "gradient norms", "dashed: plain, solid: residual; mean over seeds"),
        ),
        ("setup", "Setup", setup),
    ]
    return page(
        "Degradation study: plain vs residual nets",
        "He et al. 2016, Fig. 6 / Table 6 protocol on our data",
        sections,
    )


def _atomic_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def write_report(doc: dict[str, Any], out: Path) -> dict[str, Path]:
    """OUT/report.html, OUT/fig6.png and OUT/gradnorm.png from a study.json document."""
    fig6, grads = fig6_png(doc), gradnorm_png(doc)
    paths = {"report": out / "report.html", "fig6": out / "fig6.png", "gradnorm": out / "gradnorm.png"}
    _atomic_bytes(paths["fig6"], fig6)
    _atomic_bytes(paths["gradnorm"], grads)
    _atomic_bytes(paths["report"], report_html(doc, fig6, grads).encode("utf-8"))
    return paths
