"""The README's results table, rebuilt from the metrics.json files kept under ``docs/results/`` (no torch).

``resnet-apps results`` calls :func:`results_markdown`; with ``--readme`` the text between the two markers
below is replaced by it (:func:`replace_between_markers`). Each ``docs/results/<run>/metrics.json`` is a
copy of a run directory's file (only one level deep: runs moved into a sub-folder, e.g.
``docs/results/archive/<run>/``, stay out of the table); a ``docs/results/<name>/comparison.json`` (written by
``resnet-apps report RUN_A RUN_B``) becomes a paired-difference table under the main one. The floor, seed
spread and convergence columns come from ``results_columns``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from resnet_apps.errors import ReportError
from resnet_apps.report.document import load_metrics
from resnet_apps.report.results_columns import (
    add_seed_spreads,
    converged_of,
    floor_of,
    per_class_metric,
    seed_key,
)
from resnet_apps.report.sections import anchor_row

START_MARKER = "<!-- results:start -->"
END_MARKER = "<!-- results:end -->"


def _num(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` decimals, '–' when missing."""
    if value is None:
        return "–"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _cell(text: Any) -> str:
    """Text safe inside a Markdown table cell (pipes escaped, newlines flattened)."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _ci(low: Any, high: Any) -> str:
    """'0.471–0.700'; with a negative bound '-0.055 to -0.021' (a dash beside a minus sign misreads)."""
    if low is None or high is None:
        return "–"
    joiner = " to " if min(low, high) < 0 else "–"
    return f"{_num(low)}{joiner}{_num(high)}"


def _metric_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The anchor's metric first (headline name, alias or per-class), then the recipe's selection metric."""
    ev = doc["evaluation"]
    by_name = {r["name"]: r for r in ev["headline"]}
    anchor = doc.get("anchor") or {}
    rows: list[dict[str, Any]] = []
    target = anchor_row(ev, anchor) if anchor else None
    if target is not None:
        rows.append(by_name[target])
    elif anchor.get("metric"):
        per_class = per_class_metric(ev, str(anchor["metric"]).lower())
        if per_class is not None:
            rows.append(per_class)
    for metric in anchor.get("also") or {}:  # further published figures (MedMNIST: AUC and ACC)
        also = anchor_row(ev, {"metric": metric})
        if also is not None and all(r["name"] != also for r in rows):
            rows.append(by_name[also])
    history = doc.get("history") or []
    selection = history[0].get("metric") if history else None
    if selection is not None:
        chosen = anchor_row(ev, {"metric": selection})
        if chosen is not None and all(r["name"] != chosen for r in rows):
            rows.append(by_name[chosen])
    if not rows:
        rows.append(ev["headline"][0])
    return rows


def _weights(doc: dict[str, Any]) -> str:
    """Where the backbone started: ImageNet, another run of ours, or random weights (said plainly)."""
    repro = doc.get("reproducibility") or {}
    source = str(repro.get("weights_source") or "unknown")
    if repro.get("imagenet_weights_used"):
        return f"ImageNet ({source})"
    if source in ("none", "scratch", ""):
        return "scratch (random init; no ImageNet)"
    if source == "unknown":
        return "not recorded"
    # a run directory or weights file of ours: name it by its last path parts, never the absolute path
    parts = Path(source).parts
    tail = (
        parts[-1] if parts and parts[-1] not in ("checkpoints", "best.safetensors") else "/".join(parts[-3:])
    )
    return f"our run `{tail}` (no ImageNet)"


def _split_sizes(doc: dict[str, Any]) -> str:
    """'train / val / test' image counts (from split.sizes, else the per-class counts)."""
    split = doc.get("split") or {}
    sizes = split.get("sizes") or {
        name: sum(per_class.values()) for name, per_class in (split.get("counts") or {}).items()
    }
    if not sizes:
        return "–"
    return " / ".join(_num(sizes.get(name)) for name in ("train", "val", "test"))


def _train_time(doc: dict[str, Any]) -> tuple[float | None, int]:
    """Seconds summed over the history's epochs, and the number of epochs (None when not recorded)."""
    history = doc.get("history") or []
    seconds = [row.get("seconds") for row in history if isinstance(row.get("seconds"), (int, float))]
    return (float(sum(seconds)) if seconds else None, len(history))


def _ci_units(ev: dict[str, Any]) -> str:
    """What the bootstrap resampled: '70 images' or '2 groups' (an interval from 2 groups means little)."""
    boot = ev.get("bootstrap") or {}
    n = boot.get("n_units")
    if n is None:
        return "–"
    return f"{n:,} {'groups' if boot.get('unit') == 'group' else 'images'}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"


def result_row(doc: dict[str, Any], name: str) -> dict[str, Any]:
    """Everything the table shows about one run, as plain values (the test reads these).

    Args:
        doc: a validated metrics.json.
        name: the run's folder name under docs/results.

    Returns:
        {"run", "recipe", "task", "metrics": [{"label", "value", "ci_low", "ci_high"}], "n_test", "ci_units",
         "split", "train_seconds", "epochs", "hardware", "weights", "anchor_metric", "anchor_value",
         "anchor_source", "anchor_protocol"}.
    """
    run = doc.get("run") or {}
    anchor = doc.get("anchor") or {}
    seconds, epochs = _train_time(doc)
    device = run.get("device")
    hardware = ", ".join(str(x) for x in (device, run.get("hardware")) if x) or "not recorded"
    metric_rows = _metric_rows(doc)
    return {
        "run": name,
        "recipe": run.get("recipe") or name,
        "task": run.get("task"),
        "metrics": [
            {
                "label": r.get("label", r["name"]),
                "value": r.get("value"),
                "ci_low": r.get("ci_low"),
                "ci_high": r.get("ci_high"),
            }
            for r in metric_rows
        ],
        "floor": floor_of(doc, metric_rows[0].get("name") if metric_rows else None),
        "converged": converged_of(doc),
        "seed": (doc.get("reproducibility") or {}).get("seed"),
        "seed_key": seed_key(doc),
        "n_test": doc["evaluation"].get("n_samples"),
        "ci_units": _ci_units(doc["evaluation"]),
        "split": _split_sizes(doc),
        "train_seconds": seconds,
        "epochs": epochs,
        "hardware": hardware,
        "weights": _weights(doc),
        "anchor_metric": anchor.get("metric"),
        "anchor_value": anchor.get("value"),
        "anchor_also": dict(anchor.get("also") or {}),
        "anchor_source": anchor.get("source"),
        "anchor_protocol": anchor.get("protocol"),
    }


def load_rows(results_dir: str | Path) -> list[dict[str, Any]]:
    """:func:`result_row` for every ``<results_dir>/*/metrics.json``, sorted by folder name."""
    root = Path(results_dir)
    if not root.is_dir():
        raise ReportError(
            f"{root}: no such folder; copy each run's metrics.json to {root}/<run name>/metrics.json "
            "(or pass --dir)"
        )
    # one level only: runs kept in a sub-folder (e.g. docs/results/archive/<run>/) stay out of the table
    rows = [result_row(load_metrics(path), path.parent.name) for path in sorted(root.glob("*/metrics.json"))]
    add_seed_spreads(rows)
    return rows


def load_comparisons(results_dir: str | Path) -> list[dict[str, Any]]:
    """Every ``<results_dir>/*/comparison.json`` (from ``resnet-apps report RUN_A RUN_B``) and its folder."""
    out = []
    for path in sorted(Path(results_dir).glob("*/comparison.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ReportError(
                f"{path}: not valid JSON ({error}); re-run `resnet-apps report A B --out`"
            ) from error
        if not isinstance(doc.get("differences"), list):
            raise ReportError(f"{path}: field 'differences' missing; re-run `resnet-apps report A B --out`")
        out.append({"name": path.parent.name, **doc})
    return out


def rows_markdown(rows: list[dict[str, Any]]) -> str:
    """The main table, one line per run, then the anchors' sources and protocols as numbered notes."""
    headers = [
        "run",
        "weights",
        "test metric (95 % CI)",
        "seed spread",
        "trivial floor (95 % CI); model − floor (paired 95 % CI)",
        "published anchor",
        "images train / val / test",
        "CI resamples",
        "training time (epochs)",
        "hardware",
    ]
    lines = ["| " + " | ".join(headers) + " |", "|---|---|---|---|---|---:|---:|---:|---:|---|"]
    # runs that share a recipe share its anchor: one numbered note per distinct (source, protocol)
    note_of: dict[tuple[str, str], int] = {}
    runs_of: dict[int, list[str]] = {}
    for row in rows:
        key = (row["anchor_source"] or "no source recorded", row["anchor_protocol"] or "not stated")
        number = note_of.setdefault(key, len(note_of) + 1)
        runs_of.setdefault(number, []).append(f"`{row['run']}`")
    for row in rows:
        number = note_of[
            (row["anchor_source"] or "no source recorded", row["anchor_protocol"] or "not stated")
        ]
        metric = "<br>".join(
            f"{m['label']} **{_num(m['value'])}** ({_ci(m['ci_low'], m['ci_high'])})" for m in row["metrics"]
        )
        if row["anchor_value"] is None:
            anchor = f"none published [{number}]"
        else:
            also = "".join(f", {k} {_num(v)}" for k, v in (row.get("anchor_also") or {}).items())
            anchor = f"{row['anchor_metric']} {_num(row['anchor_value'])}{also} [{number}]"
        converged = {False: ", not converged", True: "", None: ""}[row.get("converged")]
        cells = [
            f"`{row['run']}`",
            row["weights"],
            metric,
            _seeds_cell(row.get("seeds")),
            _floor_cell(row.get("floor")),
            anchor,
            row["split"],
            row["ci_units"],
            f"{_duration(row['train_seconds'])} ({row['epochs']}{converged})",
            row["hardware"],
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    notes = [
        f"[{number}] {', '.join(runs_of[number])}: {source}. Protocol: {protocol}.  "
        for (source, protocol), number in note_of.items()
    ]
    return "\n".join(lines + [""] + notes).rstrip() + "\n"


def _seeds_cell(spread: dict[str, Any] | None) -> str:
    """'0.912 ± 0.010 sd, 0.900–0.921, 3 seeds'; '1 seed' when the run has no siblings."""
    if spread is None:
        return "1 seed"
    return (
        f"{_num(spread['mean'])} ± {_num(spread['sd'])} sd, {_ci(spread['min'], spread['max'])}, "
        f"{spread['n']} seeds"
    )


def _floor_cell(floor: dict[str, Any] | None) -> str:
    """'0.865 (0.842–0.885); +0.05 (0.02–0.08)', with 'NOT above the floor' when the difference's CI is not."""
    if floor is None:
        return "not recorded"
    text = f"{_num(floor['value'])} ({_ci(floor['ci_low'], floor['ci_high'])})"
    if floor.get("diff") is not None:
        text += f"; {floor['diff']:+.3f} ({_ci(floor['diff_ci_low'], floor['diff_ci_high'])})"
    if floor.get("beats") is False:
        text += " **NOT above the floor**"
    return text


# the comparison table keeps the headline metrics a reader decides on; the rest stay in comparison.md
COMPARISON_METRICS = ("accuracy", "balanced_accuracy", "kappa", "auroc", "macro_auroc", "miou", "mean_dice")


def comparisons_markdown(comparisons: list[dict[str, Any]]) -> str:
    """All paired comparisons in one table: B - A per headline metric with its paired bootstrap CI."""
    lines = [
        "Paired comparisons (B minus A; both runs scored on the same resampled test images in each of the "
        "paired bootstrap resamples):",
        "",
        "| comparison | A | B | metric | A | B | B − A | 95 % CI of B − A | paired resamples |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for comparison in comparisons:
        chosen = [d for d in comparison["differences"] if d.get("metric") in COMPARISON_METRICS]
        for d in chosen or comparison["differences"]:
            cells = (
                f"`{comparison['name']}`",
                f"`{comparison['a']}`",
                f"`{comparison['b']}`",
                d["metric"],
                _num(d.get("a")),
                _num(d.get("b")),
                _num(d.get("diff")),
                _ci(d.get("ci_low"), d.get("ci_high")),
                f"{_num(comparison.get('n_boot'))} (bootstrap seed {comparison.get('seed')})",
            )
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    notes = sorted({str(c["note"]) for c in comparisons if c.get("note")})
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def results_markdown(results_dir: str | Path) -> str:
    """The whole generated block: the runs table, then every paired comparison found."""
    rows = load_rows(results_dir)
    if not rows:
        raise ReportError(
            f"{results_dir}: no */metrics.json inside; copy run directories' metrics.json files there first"
        )
    parts = [rows_markdown(rows)]
    comparisons = load_comparisons(results_dir)
    if comparisons:
        parts.append(comparisons_markdown(comparisons))
    return "\n".join(parts)


def replace_between_markers(text: str, block: str, where: str = "README") -> str:
    """``text`` with everything between START_MARKER and END_MARKER replaced by ``block`` (markers kept)."""
    start, end = text.find(START_MARKER), text.find(END_MARKER)
    if start < 0 or end < 0 or end < start:
        raise ReportError(
            f"{where}: markers {START_MARKER!r} ... {END_MARKER!r} not found in that order; add both lines "
            "where the table belongs"
        )
    return text[: start + len(START_MARKER)] + "\n" + block.rstrip("\n") + "\n" + text[end:]
