"""``resnet-apps report RUN_A RUN_B``: two runs side by side with paired bootstrap differences (B minus A).

Pairing needs each run's per-sample predictions on the same test set: ``evaluation.samples`` in metrics.json
(ids, y_true, y_prob; segmentation: per-image confusion matrices). Samples are matched by id; runs whose
truths disagree on a shared id were not evaluated on the same data and are refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from resnet_apps.errors import ReportError
from resnet_apps.report import plots
from resnet_apps.report.document import load_metrics, write_text_atomic
from resnet_apps.report.html import esc, figure, fmt, fmt_ci, page, table
from resnet_apps.report.markdown import md_text
from resnet_apps.report.sections import LOWER_IS_BETTER, describe_bootstrap


def _aligned(ev_a: dict[str, Any], ev_b: dict[str, Any]) -> tuple[list[int], list[int], str]:
    """Row indices of the shared sample ids in A and B (A's order) and a note on unmatched samples."""
    ids_a, ids_b = ev_a["samples"]["ids"], ev_b["samples"]["ids"]
    where_b = {sid: i for i, sid in enumerate(ids_b)}
    ia = [i for i, sid in enumerate(ids_a) if sid in where_b]
    ib = [where_b[ids_a[i]] for i in ia]
    if not ia:
        raise ReportError(
            "compare: the two runs share no test sample id; they were not evaluated on the same "
            "test set (check data.split seed and method), or on machines with different identifier hash "
            "keys (sample ids are keyed hashes: see README 'Identifier hashes')"
        )
    note = ""
    if len(ia) < max(len(ids_a), len(ids_b)):
        note = (
            f"Only the {len(ia)} samples present in both runs are paired (A has {len(ids_a)}, "
            f"B has {len(ids_b)})."
        )
    return ia, ib, note


def paired_rows(ev_a: dict[str, Any], ev_b: dict[str, Any], n_boot: int, seed: int) -> tuple[list[dict], str]:
    """Paired differences for every headline metric; ([] , reason) when pairing is impossible."""
    import numpy as np

    from resnet_apps.metrics import paired_headline, paired_headline_segmentation

    if "samples" not in ev_a or "samples" not in ev_b:
        return [], (
            "No paired difference: a run's metrics.json has no evaluation.samples (per-sample "
            "predictions); re-run `resnet-apps evaluate` with samples kept."
        )
    ia, ib, note = _aligned(ev_a, ev_b)
    sa, sb = ev_a["samples"], ev_b["samples"]
    groups = None if sa.get("groups") is None else [sa["groups"][i] for i in ia]
    mode = ev_a["mode"]
    if mode == "segmentation":
        ca, cb = np.asarray(sa["confusions"])[ia], np.asarray(sb["confusions"])[ib]
        return paired_headline_segmentation(ca, cb, groups, n_boot, seed), note

    def arr(values: list, idx: list[int]) -> np.ndarray:
        return np.array(
            [
                [np.nan if v is None else v for v in values[i]]
                if isinstance(values[i], list)
                else (np.nan if values[i] is None else values[i])
                for i in idx
            ],
            dtype=float,
        )

    ya, yb = arr(sa["y_true"], ia), arr(sb["y_true"], ib)
    if not np.array_equal(np.isnan(ya), np.isnan(yb)) or not np.allclose(
        np.nan_to_num(ya), np.nan_to_num(yb)
    ):
        raise ReportError(
            "compare: the runs disagree on the true labels of shared samples; they were not "
            "evaluated on the same test set"
        )
    pa, pb = arr(sa["y_prob"], ia), arr(sb["y_prob"], ib)
    t_a = (ev_a.get("operating_point") or {}).get("threshold")
    t_b = (ev_b.get("operating_point") or {}).get("threshold")
    rows = paired_headline(ya, pa, pb, groups, n_boot, seed, mode=mode, threshold_a=t_a, threshold_b=t_b)
    return rows, note


def _diff_cell(d: dict[str, Any] | None) -> str:
    """'+0.041 (0.012 to 0.070)'; the diff alone when its interval is undefined."""
    if d is None or d["diff"] is None:
        return "–"
    if d["ci_low"] is None or d["ci_high"] is None:
        return f"{d['diff']:+.3f} (interval undefined)"
    return f"{d['diff']:+.3f} ({fmt(d['ci_low'])} to {fmt(d['ci_high'])})"


def _verdict(row: dict[str, Any]) -> str:
    low, high = row.get("ci_low"), row.get("ci_high")
    if low is None or high is None:
        return "undefined"
    if low <= 0 <= high:
        return "no clear difference"
    b_higher = low > 0
    better = b_higher != (row["metric"] in LOWER_IS_BETTER)
    return "B better" if better else "A better"


def compare_runs(
    run_a: str | Path,
    run_b: str | Path,
    out_dir: str | Path | None = None,
    *,
    n_boot: int | None = None,
    seed: int | None = None,
) -> dict[str, Path]:
    """Write comparison.html / .md / .json for two runs evaluated on the same test set.

    Args:
        run_a, run_b: run directories (B minus A is reported, e.g. A = scratch, B = ImageNet).
        out_dir: default ``RUN_B/compare_<name of A>``.
        n_boot, seed: paired bootstrap; default: run A's own bootstrap settings.

    Returns:
        {"html", "md", "json"} paths.
    """
    run_a, run_b = Path(run_a), Path(run_b)
    doc_a, doc_b = load_metrics(run_a), load_metrics(run_b)
    ev_a, ev_b = doc_a["evaluation"], doc_b["evaluation"]
    for key in ("kind", "mode", "classes"):
        if ev_a.get(key) != ev_b.get(key):
            raise ReportError(
                f"compare: evaluation.{key} differs ({ev_a.get(key)!r} vs {ev_b.get(key)!r}); only "
                "runs of the same task on the same classes can be compared"
            )
    boot = ev_a.get("bootstrap") or {}
    n_boot = int(n_boot if n_boot is not None else boot.get("n_boot") or 1000)
    seed = int(seed if seed is not None else boot.get("seed") or 0)
    diffs, note = paired_rows(ev_a, ev_b, n_boot, seed)
    by_name = {d["metric"]: d for d in diffs}
    # a re-evaluation (``resnet-apps evaluate RUN``) is named after the run it scored, not its output folder
    name_a, name_b = (doc["run"].get("evaluated_run") or doc["run"]["name"] for doc in (doc_a, doc_b))
    rows = []
    head_b = {r["name"]: r for r in ev_b["headline"]}
    for ra in ev_a["headline"]:
        rb, d = head_b.get(ra["name"], {}), by_name.get(ra["name"])
        rows.append(
            [
                ra.get("label", ra["name"]),
                fmt_ci(ra),
                fmt_ci(rb) if rb else "–",
                _diff_cell(d),
                "–" if d is None else _verdict(d),
            ]
        )
    headers = ["Metric", f"A: {name_a}", f"B: {name_b}", "B − A (paired 95 % CI)", "Verdict"]
    intro = (
        f"<p>A = <strong>{esc(name_a)}</strong>, B = <strong>{esc(name_b)}</strong>. "
        f"Differences are B minus A with a paired percentile bootstrap ({n_boot:,} resamples, seed {seed}"
        f"{', whole groups' if diffs and diffs[0]['unit'] == 'group' else ''}): both runs are scored on the "
        "same resample each time. A CI that excludes 0 is a difference at that confidence.</p>"
    )
    body = (
        intro + table(headers, rows, numeric={1, 2, 3}) + (f'<p class="note">{esc(note)}</p>' if note else "")
    )
    body += f'<p class="note">A: {esc(describe_bootstrap(ev_a))} B: {esc(describe_bootstrap(ev_b))}</p>'
    curves = (
        [
            dict(c, label=f"{tag}: {c['label']}")
            for tag, ev in (("A", ev_a), ("B", ev_b))
            for c in ((ev.get("curves") or {}).get("roc") or [])[:1]
        ]
        if ev_a.get("mode") == "binary"
        else []
    )
    body += figure(plots.roc_png(curves, "ROC curves, A and B"), "ROC curves of both runs")
    repro_rows = []
    for key in ("weights_source", "imagenet_weights_used", "seed", "recipe_hash", "data_hash", "git_commit"):
        repro_rows.append(
            [
                key,
                (doc_a.get("reproducibility") or {}).get(key),
                (doc_b.get("reproducibility") or {}).get(key),
            ]
        )
    sections = [
        ("comparison", "Side by side with paired differences", body),
        ("provenance", "Provenance", table(["Item", "A", "B"], repro_rows)),
    ]
    out = Path(out_dir) if out_dir is not None else run_b / f"compare_{run_a.name}"
    html_path = write_text_atomic(
        out / "comparison.html", page(f"{name_b} vs {name_a}", f"{ev_a['kind']} ({ev_a['mode']})", sections)
    )
    md = [
        f"# {md_text(name_b)} vs {md_text(name_a)}",
        "",
        "| " + " | ".join(md_text(h) for h in headers) + " |",
        "|---|---:|---:|---:|---|",
    ]
    md += ["| " + " | ".join(md_text(c) for c in r) + " |" for r in rows]
    md_path = write_text_atomic(out / "comparison.md", "\n".join(md + ["", md_text(note), ""]))
    json_path = write_text_atomic(
        out / "comparison.json",
        json.dumps(
            {"a": name_a, "b": name_b, "n_boot": n_boot, "seed": seed, "differences": diffs, "note": note},
            indent=1,
            allow_nan=False,
        )
        + "\n",
    )
    return {"html": html_path, "md": md_path, "json": json_path}
