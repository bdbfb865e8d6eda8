"""report.md: the short, plain-text companion of report.html (headline with CIs, operating point, caveats)."""

from __future__ import annotations

import html
from typing import Any

from resnet_apps.report.floor import flags, floor_markdown
from resnet_apps.report.sections import (
    anchor_values,
    describe_bootstrap,
    few_units,
    has_anchor,
    run_facts,
    weights_warning,
)


def _f(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def md_text(value: Any) -> str:
    """Text from a recipe or the data, safe in Markdown: HTML escaped (a Markdown viewer renders raw HTML,
    so an anchor source ``<img src=x onerror=...>`` would run), pipes escaped and newlines joined (they
    would break a table row)."""
    return html.escape(str(value), quote=False).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def report_markdown(doc: dict[str, Any]) -> str:
    """The Markdown text of report.md for a validated metrics document."""
    run, ev = doc["run"], doc["evaluation"]
    anchor = doc.get("anchor") or {}
    lines = [
        f"# {md_text(run['name'])}: evaluation report",
        "",
        *[f"**{md_text(line)}**\n" for line in flags(doc)],
        f"Task: {md_text(run['task'])} ({md_text(ev.get('mode'))}); "
        f"split {ev.get('split', 'test')}: {ev.get('n_samples')} samples"
        + (f" from {ev['n_groups']} groups" if ev.get("n_groups") else "")
        + ".",
        describe_bootstrap(ev),
        *[f"\n{md_text(note)}" for note in ev.get("notes") or []],
        "",
        f"Run: {md_text('; '.join(run_facts(doc)))}.",
        *([f"\n**{md_text(weights_warning(doc))}**"] if weights_warning(doc) else []),
        "",
        "| Metric | Ours | 95 % CI | Published anchor |",
        "|---|---:|---:|---:|",
    ]
    published = anchor_values(ev, anchor)
    few = few_units(ev)
    for r in ev["headline"]:
        ref = _f(published.get(r["name"]))
        warn = f" ⚠ {few}" if few and r.get("ci_low") is not None else ""
        lines.append(
            f"| {md_text(r.get('label', r['name']))} | {_f(r['value'])} | {_f(r['ci_low'])} – "
            f"{_f(r['ci_high'])}{warn} | {ref} |"
        )
    if has_anchor(anchor):
        lines += [
            "",
            f"Anchor: {md_text(anchor.get('metric'))} = {_f(anchor.get('value'))} ({md_text(anchor.get('source'))}); "
            f"protocol: {md_text(anchor.get('protocol', 'not stated'))}.",
        ]
    lines += floor_markdown(doc, md_text)
    points = [ev["operating_point"]] if ev.get("operating_point") else ev.get("operating_points") or []
    if points:
        lines += ["", "## Operating point", ""] + [f"- {md_text(p['sentence'])}" for p in points]
    leak = (doc.get("split") or {}).get("leakage") or {}
    if leak.get("ok") is False:
        lines += [
            "",
            f"**Leakage check FAILED**: {len(leak.get('offending_groups') or [])} group(s) in more "
            "than one split.",
        ]
    repro = doc.get("reproducibility") or {}
    lines += ["", "## Reproducibility", ""]
    if repro.get("imagenet_weights_used") is False:
        lines.append(
            f"- **ImageNet weights were NOT used** (backbone from {md_text(repro.get('weights_source') or 'none')})."
        )
    elif repro.get("imagenet_weights_used") is True:
        lines.append(f"- ImageNet weights used: {md_text(repro.get('weights_source'))}.")
    for key in ("git_commit", "recipe_hash", "data_hash", "seed"):
        if key in repro:
            lines.append(f"- {key}: `{md_text(repro[key])}`")
    skipped = doc.get("skipped") or []
    lines += [
        "",
        f"Skipped files: {len(skipped)}" + (" (see report.html and skipped.csv)." if skipped else "."),
        "",
        "Full report with plots: report.html. Machine-readable: metrics.json.",
        "",
    ]
    return "\n".join(lines)
