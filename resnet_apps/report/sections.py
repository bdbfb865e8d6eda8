"""Report sections about the run itself: headline, data card, split, training, skipped files, reproducibility.

Each function takes the validated metrics document and returns inner HTML (or "" when the run has no such
data, in which case the section says so rather than disappearing silently).
"""

from __future__ import annotations

from typing import Any

from resnet_apps.report import plots
from resnet_apps.report.html import esc, figure, fmt, table
from resnet_apps.report.md_render import markdown_to_html

LOWER_IS_BETTER = ("brier", "ece")


def describe_bootstrap(ev: dict[str, Any]) -> str:
    """One sentence on how the intervals were computed, for tables and report.md."""
    b = ev.get("bootstrap") or {}
    if not b.get("n_boot"):
        return "No bootstrap was run: point estimates only."
    unit = {
        "group": "whole groups (patients / tiles / scenes)",
        "image": "images",
        "sample": "individual images",
    }.get(b.get("unit", ""), esc(b.get("unit")))
    return (
        f"{round(100 * b.get('ci', 0.95))} % confidence intervals: percentile bootstrap, "
        f"{b['n_boot']:,} resamples of {b.get('n_units', '?'):,} {unit}, seed {b.get('seed')}."
    )


def _skipped_note(ev: dict[str, Any]) -> str:
    skipped = [f"{r.get('label', r['name'])}: {r['n_skipped']}" for r in ev["headline"] if r.get("n_skipped")]
    if not skipped:
        return ""
    return (
        f'<p class="note">Resamples where a metric was undefined (e.g. one class absent, so AUROC '
        f"cannot be computed) were skipped and counted: {esc('; '.join(skipped))}.</p>"
    )


# recipe anchor metric names -> our headline names (a recipe says "auroc"; multi-label reports its macro mean)
ANCHOR_ALIASES = {
    "auroc": ("auroc", "macro_auroc"),
    "auc": ("auroc", "macro_auroc"),
    "ap": ("average_precision", "macro_average_precision"),
    "map": ("macro_average_precision", "average_precision"),
    "f1": ("macro_f1",),
    "iou": ("miou",),
    "dice": ("mean_dice",),
    "oa": ("accuracy",),
}


def anchor_row(ev: dict[str, Any], anchor: dict[str, Any]) -> str | None:
    """The headline ``name`` the recipe's anchor metric refers to, or None when there is no such row."""
    names = [r["name"] for r in ev["headline"]]
    metric = str(anchor.get("metric", "")).lower()
    for candidate in (metric, *ANCHOR_ALIASES.get(metric, ())):
        if candidate in names:
            return candidate
    return None


FEW_UNITS = 20  # a percentile bootstrap over fewer units than this gives intervals that mean little


def few_units(ev: dict[str, Any]) -> str | None:
    """'only 12 groups' when the bootstrap resampled fewer than FEW_UNITS units, else None."""
    boot = ev.get("bootstrap") or {}
    n = boot.get("n_units")
    if not boot.get("n_boot") or not isinstance(n, int) or n >= FEW_UNITS:
        return None
    return f"only {n} {'groups' if boot.get('unit') == 'group' else 'images'}"


def _ci_cell(row: dict[str, Any], few: str | None = None) -> str:
    """'low – high' (with a warning when resampled from few units), or why there is no interval."""
    if row.get("ci_low") is not None and row.get("ci_high") is not None:
        warn = f" ⚠ {few}" if few else ""
        return f"{fmt(row['ci_low'])} – {fmt(row['ci_high'])}{esc(warn)}"
    if row.get("n_skipped") and not row.get("n_valid"):
        return "undefined in every resample"
    return "–"


def anchor_values(ev: dict[str, Any], anchor: dict[str, Any]) -> dict[str, float]:
    """Headline ``name`` -> published value: the anchor's metric and each of ``anchor.also`` (same source)."""
    out: dict[str, float] = {}
    pairs = [(anchor.get("metric"), anchor.get("value")), *((anchor.get("also") or {}).items())]
    for metric, value in pairs:
        name = anchor_row(ev, {"metric": metric}) if metric else None
        if name is not None and value is not None and name not in out:
            out[name] = value
    return out


def has_anchor(anchor: dict[str, Any]) -> bool:
    """A recipe's anchor block counts only with a value (an empty block has metric/value/source None)."""
    return anchor.get("value") is not None


def run_facts(doc: dict[str, Any]) -> list[str]:
    """What was run, for the top of the report: backbone, image size, weights, epochs, every --set override."""
    run, repro = doc.get("run") or {}, doc.get("reproducibility") or {}
    facts = []
    if run.get("backbone"):
        facts.append(f"backbone {run['backbone']}")
    if run.get("image_size"):
        facts.append(f"image size {run['image_size']} px")
    used, source = repro.get("imagenet_weights_used"), repro.get("weights_source")
    if used is True:
        facts.append(f"weights: ImageNet ({source})")
    elif used is False:
        facts.append(f"weights: {'random init' if source in (None, '', 'none', 'scratch') else source}")
    if run.get("epochs_run") is not None:
        best = f", best epoch {run['best_epoch']}" if run.get("best_epoch") is not None else ""
        facts.append(f"{run['epochs_run']} epoch(s) run{best}")
    overrides = run.get("overrides") or []
    facts.append("overrides: " + (" ".join(f"--set {o}" for o in overrides) if overrides else "none"))
    return facts


def weights_warning(doc: dict[str, Any]) -> str | None:
    """The sentence that must sit beside the headline numbers when ImageNet weights were not used."""
    repro = doc.get("reproducibility") or {}
    if repro.get("imagenet_weights_used") is not False:
        return None
    return (
        "ImageNet weights were NOT used: the backbone started from "
        f"{repro.get('weights_source') or 'none'}; these numbers are not comparable with ImageNet-pretrained "
        "anchors."
    )


def headline(doc: dict[str, Any]) -> str:
    ev = doc["evaluation"]
    anchor = doc.get("anchor") or {}
    target = anchor_row(ev, anchor)
    val = {r["name"]: r for r in (doc.get("validation") or {}).get("headline", [])}
    groups = f" from {ev['n_groups']:,} groups" if ev.get("n_groups") else ""
    warning = weights_warning(doc)
    intro = (
        f'<p class="note">Run: {esc("; ".join(run_facts(doc)))}.</p>'
        + (f'<p class="bad box">{esc(warning)}</p>' if warning else "")
        + f"<p>Split <strong>{esc(ev.get('split', 'test'))}</strong>: {ev.get('n_samples', 0):,} images"
        f"{esc(groups)}. {esc(describe_bootstrap(ev))}</p>"
    ) + "".join(f'<p class="note">{esc(note)}</p>' for note in ev.get("notes") or [])
    rows = []
    few = few_units(ev)
    published = anchor_values(ev, anchor)
    for r in ev["headline"]:
        anchor_cell = fmt(published[r["name"]]) if r["name"] in published else "–"
        lower = r["name"] in LOWER_IS_BETTER and "lower" not in r.get("label", "")
        row = [
            esc(r.get("label", r["name"])) + (" (lower is better)" if lower else ""),
            f"<strong>{fmt(r['value'])}</strong>",
            _ci_cell(r, few),
            anchor_cell,
        ]
        if val:
            row.append(fmt(val.get(r["name"], {}).get("value")))
        rows.append(row)
    headers = ["Metric", "Ours (test)", "95 % CI", "Published anchor"] + (["Validation"] if val else [])
    out = intro + table(headers, rows, numeric=set(range(1, len(headers))), raw=True)
    if has_anchor(anchor):
        label = next((r.get("label", r["name"]) for r in ev["headline"] if r["name"] == target), None)
        out += (
            f'<p class="note">Anchor: {esc(label or anchor.get("metric"))} = {fmt(anchor.get("value"))} from '
            f"{esc(anchor.get('source'))}. Its protocol: {esc(anchor.get('protocol', 'not stated'))}. "
            "Compare only where the protocols match (split, bands, image size, pretraining).</p>"
        )
    else:
        out += '<p class="note">The recipe names no published anchor for this task.</p>'
    return out + _skipped_note(ev)


def data_card(doc: dict[str, Any]) -> str:
    card = doc.get("data_card") or {}
    if not card:
        return '<p class="warn box">No data card was recorded for this run.</p>'
    front = card.get("front_matter") or {}
    facts = [
        [k, ", ".join(map(str, v)) if isinstance(v, list) and all(not isinstance(x, dict) for x in v) else v]
        for k, v in front.items()
        if k in ("title", "citation", "licence", "source_url", "modality", "file_format", "checksum")
    ]
    out = table(["Field", "Value"], facts) if facts else ""
    classes = front.get("classes")
    if isinstance(classes, list) and classes and isinstance(classes[0], dict):
        out += "<h3>Classes</h3>" + table(
            ["Class", "Definition"], [[c.get("name"), c.get("definition")] for c in classes]
        )
    limits = front.get("known_limits")
    if limits:
        items = limits if isinstance(limits, list) else [limits]
        out += "<h3>Known limits</h3><ul>" + "".join(f"<li>{esc(x)}</li>" for x in items) + "</ul>"
    if card.get("markdown"):
        out += f'<div class="card">{markdown_to_html(card["markdown"])}</div>'
    return out


def split(doc: dict[str, Any]) -> str:
    s = doc.get("split") or {}
    if not s:
        return '<p class="warn box">No split information was recorded.</p>'
    out = (
        f"<p>Method <strong>{esc(s.get('method'))}</strong>, seed {esc(s.get('seed'))}"
        + (f", group pattern <code>{esc(s['group_pattern'])}</code>" if s.get("group_pattern") else "")
        + ".</p>"
    )
    leak = s.get("leakage") or {}
    if leak.get("ok") is True and not any((s.get("groups") or {}).values()):
        out += (
            '<p class="warn box">No groups: this split has no patient / tile ids, so no leakage check was '
            "possible; images of one patient or scene may sit in different splits.</p>"
        )
    elif leak.get("ok") is True:
        out += (
            '<p class="ok box">Leakage check passed: no patient / tile group appears in more than one '
            "split.</p>"
        )
    elif leak.get("ok") is False:
        offending = leak.get("offending_groups") or []
        out += (
            f'<p class="bad box">Leakage check FAILED: {len(offending)} group(s) appear in more than one '
            "split; the test numbers are optimistic. Hashed groups: "
            f"{esc(', '.join(map(str, offending[:20])))}</p>"
        )
    else:
        out += '<p class="warn box">No leakage check was recorded (no groups defined for this data).</p>'
    counts = s.get("counts") or {}
    if counts:
        splits = list(counts)
        classes = list(dict.fromkeys(c for sp in splits for c in counts[sp]))
        rows = [[c, *[counts[sp].get(c, 0) for sp in splits]] for c in classes]
        rows.append(["total", *[sum(counts[sp].values()) for sp in splits]])
        groups = s.get("groups") or {}
        if groups:
            rows.append(["groups (patients / tiles)", *[groups.get(sp, "–") for sp in splits]])
        out += table(["Class", *splits], rows, numeric=set(range(1, len(splits) + 1)))
    return out


def training(doc: dict[str, Any]) -> str:
    history = doc.get("history") or []
    if not history:
        return (
            '<p class="note">No training history (this report was made by `evaluate` on a saved model).</p>'
        )
    metric = (doc.get("run") or {}).get("metric") or "validation metric"
    out = figure(
        plots.history_png(history, metric),
        "training and validation loss and metric per epoch",
        "Loss per epoch and the validation metric used to keep the best checkpoint.",
    )
    last = history[-1]
    seconds = sum(h.get("seconds") or 0 for h in history)
    speed = [h["images_per_s"] for h in history if h.get("images_per_s")]
    out += (
        f'<p class="note">{len(history)} epochs, {seconds / 60:.1f} min in total'
        + (f", {sum(speed) / len(speed):.0f} images/s on average" if speed else "")
        + f"; last epoch: train loss {fmt(last.get('train_loss'))}, "
        f"validation loss {fmt(last.get('val_loss'))}, {esc(metric)} {fmt(last.get('val_metric'))}.</p>"
    )
    return out


def skipped(doc: dict[str, Any]) -> str:
    items = doc.get("skipped") or []
    if not items:
        return '<p class="ok box">No file was skipped: every file listed for this run was read.</p>'
    rows = [[item["path"], item["reason"]] for item in items[:200]]
    more = f'<p class="note">… and {len(items) - 200} more (see skipped.csv).</p>' if len(items) > 200 else ""
    return (
        f'<p class="warn box">{len(items)} file(s) were skipped and are not in any number above.</p>'
        + table(["File", "Reason"], rows)
        + more
    )


def reproducibility(doc: dict[str, Any]) -> str:
    r = doc.get("reproducibility") or {}
    if not r:
        return '<p class="warn box">No reproducibility record: versions and hashes are unknown.</p>'
    used = r.get("imagenet_weights_used")
    source = r.get("weights_source") or "none"
    if used is True:
        out = f'<p class="ok box">ImageNet-pretrained weights were used (source: {esc(source)}).</p>'
    elif used is False:
        start = "random initialisation (no pretrained weights)" if source in ("none", "scratch") else source
        out = (
            f'<p class="bad box">ImageNet weights were NOT used: the backbone started from {esc(start)}. '
            "Numbers are not comparable with ImageNet-pretrained anchors.</p>"
        )
    else:
        out = '<p class="warn box">Whether ImageNet weights were used was not recorded.</p>'
    rows = [
        [key, r.get(key)]
        for key in (
            "git_commit",
            "recipe_hash",
            "data_hash",
            "seed",
            "weights_source",
            "weights_note",
            "deterministic",
            "device",
            "command",
        )
        if key in r
    ]
    run = doc.get("run") or {}
    rows += [
        [f"run: {key}", run[key]]
        for key in ("best_epoch", "epochs_run", "world_size", "device", "hardware")
        if run.get(key) is not None
    ]
    rows += [[f"version: {name}", version] for name, version in sorted((r.get("versions") or {}).items())]
    return out + table(["Item", "Value"], rows)


def remote_sensing(doc: dict[str, Any]) -> str:
    """CRS, ground resolution, area, bands with wavelengths, normalisation, the split's spatial check, legend."""
    geo = doc.get("geo") or {}
    norm = doc.get("normalisation") or {}
    card_bands = ((doc.get("data_card") or {}).get("front_matter") or {}).get("bands") or []
    wavelength = {
        str(b.get("name")): b.get("wavelength_nm")
        for b in card_bands
        if isinstance(b, dict) and b.get("name")
    }
    units = geo.get("units") or "CRS units"
    res = ", ".join(f"{x:g} x {y:g} {units}" for x, y in geo.get("resolution") or [])
    area = geo.get("area_km2")
    s = doc.get("split") or {}
    spatial = s.get("method") in ("spatial", "group") and bool(s.get("groups"))
    leak = (s.get("leakage") or {}).get("ok")
    rows = [
        ["CRS", ", ".join(geo.get("crs") or []) or "none (not georeferenced)"],
        ["Ground resolution", res or "–"],
        [
            "Area evaluated",
            f"{area:,.2f} km² over {geo.get('files', 0):,} files" if area is not None else "–",
        ],
        [
            "Spatial split check",
            (
                f"{s.get('method')} split by tile / scene groups: leakage check {'passed' if leak else 'FAILED'}"
            )
            if spatial
            else f"{s.get('method') or '?'} split without spatial groups: neighbouring chips may sit in "
            "different splits, so scores can be optimistic",
        ],
    ]
    out = table(["Fact", "Value"], rows)
    bands = norm.get("bands") or []
    if bands:
        mean, std = norm.get("mean") or [], norm.get("std") or []
        brows = [
            [
                b,
                wavelength.get(str(b), "–"),
                fmt(mean[i]) if i < len(mean) else "–",
                fmt(std[i]) if i < len(std) else "–",
            ]
            for i, b in enumerate(bands)
        ]
        out += f"<h3>Bands and normalisation ({esc(norm.get('source', '?'))})</h3>" + table(
            ["Band", "Wavelength (nm)", "Mean", "Std"], brows, numeric={1, 2, 3}
        )
    legend = geo.get("legend") or []
    if legend:
        box = "display:inline-block;width:1em;height:1em;background:rgb({})"
        swatches = "".join(
            f'<li><span style="{box.format(",".join(str(int(v)) for v in e["rgb"]))}"></span> '
            f"{esc(e['class'])}</li>"
            for e in legend
        )
        out += (
            '<h3>Class map legend</h3><p class="note">The colours <code>resnet-apps predict</code> writes into '
            f"class maps (GDAL colour table; QGIS shows them with these names).</p><ul>{swatches}</ul>"
        )
    return out
