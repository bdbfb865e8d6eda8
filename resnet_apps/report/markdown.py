"""report.md: the short, plain-text companion of report.html (headline with CIs, operating point, caveats)."""

from __future__ import annotations

from typing import Any

from resnet_apps.report.sections import (
    anchor_row,
    describe_bootstrap,
    few_units,
    has_anchor,
    run_facts,
    weights_warning,
)


def _f(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _cell(value: Any) -> str:
    """Table-cell text: pipes and newlines would break the Markdown table."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def report_markdown(doc: dict[str, Any]) -> str:
    """The Markdown text of report.md for a validated metrics document."""
    run, ev = doc["run"], doc["evaluation"]
    anchor = doc.get("anchor") or {}
    lines = [
        f"# {_cell(run['name'])}: evaluation report",
        "",
        f"Task: {run['task']} ({ev.get('mode')}); "
        f"split {ev.get('split', 'test')}: {ev.get('n_samples')} samples"
        + (f" from {ev['n_groups']} groups" if ev.get("n_groups") else "")
        + ".",
        describe_bootstrap(ev),
        *[f"\n{note}" for note in ev.get("notes") or []],
        "",
        f"Run: {_cell('; '.join(run_facts(doc)))}.",
        *([f"\n**{weights_warning(doc)}**"] if weights_warning(doc) else []),
        "",
        "| Metric | Ours | 95 % CI | Published anchor |",
        "|---|---:|---:|---:|",
    ]
    target = anchor_row(ev, anchor)
    few = few_units(ev)
    for r in ev["headline"]:
        ref = _f(anchor.get("value")) if r["name"] == target else "–"
        warn = f" ⚠ {few}" if few and r.get("ci_low") is not None else ""
        lines.append(
            f"| {_cell(r.get('label', r['name']))} | {_f(r['value'])} | {_f(r['ci_low'])} – "
            f"{_f(r['ci_high'])}{warn} | {ref} |"
        )
    if has_anchor(anchor):
        lines += [
            "",
            f"Anchor: {anchor.get('metric')} = {_f(anchor.get('value'))} ({_cell(anchor.get('source'))}); "
            f"protocol: {_cell(anchor.get('protocol', 'not stated'))}.",
        ]
    points = [ev["operating_point"]] if ev.get("operating_point") else ev.get("operating_points") or []
    if points:
        lines += ["", "## Operating point", ""] + [f"- {p['sentence']}" for p in points]
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
            f"- **ImageNet weights were NOT used** (backbone from {repro.get('weights_source') or 'none'})."
        )
    elif repro.get("imagenet_weights_used") is True:
        lines.append(f"- ImageNet weights used: {repro.get('weights_source')}.")
    for key in ("git_commit", "recipe_hash", "data_hash", "seed"):
        if key in repro:
            lines.append(f"- {key}: `{repro[key]}`")
    skipped = doc.get("skipped") or []
    lines += [
        "",
        f"Skipped files: {len(skipped)}" + (" (see report.html and skipped.csv)." if skipped else "."),
        "",
        "Full report with plots: report.html. Machine-readable: metrics.json.",
        "",
    ]
    return "\n".join(lines)
