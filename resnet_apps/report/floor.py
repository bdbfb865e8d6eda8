"""What a reader must see first: does the model beat its trivial floor, and had it converged?

``flags`` gives the plain sentences for the top of report.html and report.md; ``floor_html`` and
``floor_markdown`` the model-vs-floor table (each headline metric, the floor's value with its interval, the
paired bootstrap difference model minus floor with its interval). Old metrics.json files without a
``convergence`` block get it from their history (``metrics.convergence``).
"""

from __future__ import annotations

from typing import Any

from resnet_apps.metrics.convergence import convergence
from resnet_apps.report.html import esc, fmt, table


def convergence_of(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The document's ``convergence`` block, or one derived from its history."""
    return doc.get("convergence") or convergence(doc.get("history") or [])


def flags(doc: dict[str, Any]) -> list[str]:
    """Plain-words warnings for the top of the report: model not above its floor, run not converged."""
    out = []
    base = doc.get("baseline") or {}
    if base.get("beats_floor") is False:
        row = _row(base, base.get("metric"))
        numbers = (
            f" ({base['metric']}: model {fmt(row['b'])}, floor {fmt(row['a'])}, difference {fmt(row['diff'])}, "
            f"95 % CI {fmt(row['ci_low'])} to {fmt(row['ci_high'])})"
            if row
            else ""
        )
        out.append(
            "The model does NOT beat a trivial baseline: logistic regression on "
            f"{base.get('features', 'trivial features')} scores as well or better on the same images{numbers}. "
            "Treat the model's numbers as no evidence of learning beyond image statistics."
        )
    conv = convergence_of(doc)
    if conv and conv.get("converged") is False:
        out.append(str(conv.get("sentence")).replace("not converged:", "Not converged:", 1))
    return out


def _row(base: dict[str, Any], metric: Any) -> dict[str, Any] | None:
    return next((r for r in base.get("difference") or [] if r.get("metric") == metric), None)


def _ci(row: dict[str, Any] | None, low: str = "ci_low", high: str = "ci_high") -> str:
    if not row or row.get(low) is None or row.get(high) is None:
        return "–"
    joiner = " to " if min(row[low], row[high]) < 0 else " – "  # a dash beside a minus sign misreads
    return f"{fmt(row[low])}{joiner}{fmt(row[high])}"


def floor_rows(doc: dict[str, Any]) -> list[list[str]]:
    """[metric label, model, floor, floor CI, difference, difference CI] per headline metric (plain text)."""
    base = doc.get("baseline") or {}
    ev = base.get("evaluation") or {}
    floor = {r["name"]: r for r in ev.get("headline") or []}
    rows = []
    for r in doc["evaluation"]["headline"]:
        f, d = floor.get(r["name"]), _row(base, r["name"])
        rows.append(
            [
                str(r.get("label", r["name"])),
                fmt(r.get("value")),
                fmt(f.get("value")) if f else "–",
                _ci(f),
                fmt(d.get("diff")) if d else "–",
                _ci(d),
            ]
        )
    return rows


HEADERS = ["Metric", "Model", "Floor", "Floor 95 % CI", "Model - floor", "Difference 95 % CI (paired)"]


def _describe(base: dict[str, Any]) -> str:
    fitted = base.get("fitted_on") or {}
    verdict = {True: "beats", False: "does NOT beat", None: "cannot be compared with"}[
        base.get("beats_floor")
    ]
    return (
        f"Floor: {base.get('method')}, on {base.get('features')}; fitted on {fitted.get('train', '?')} of train, "
        f"C = {base.get('c')} chosen on {fitted.get('val', '?')} of validation; scored on the same "
        f"{(base.get('evaluation') or {}).get('split', 'test')} images as the model with the same bootstrap. "
        f"On {base.get('metric')}, the model {verdict} its floor (paired bootstrap: the difference's interval "
        "must lie above 0)." + (f" {base['note']}." if base.get("note") else "")
    )


def floor_html(doc: dict[str, Any]) -> str:
    """The model-vs-floor section of report.html."""
    base = doc.get("baseline")
    if not base:
        return '<p class="warn box">No baseline floor was recorded (a run from before floors; re-run ' \
               "<code>resnet-apps evaluate RUN</code>).</p>"  # fmt: skip
    if base.get("error"):
        return f'<p class="warn box">Baseline floor not computed: {esc(base["error"])}</p>'
    rows = floor_rows(doc)
    return table(HEADERS, rows, numeric={1, 2, 3, 4, 5}) + f'<p class="note">{esc(_describe(base))}</p>'


def floor_markdown(doc: dict[str, Any], text: Any) -> list[str]:
    """report.md lines of the model-vs-floor table; ``text`` escapes recipe / data text for Markdown."""
    base = doc.get("baseline")
    if not base:
        return ["", "No baseline floor was recorded (re-run `resnet-apps evaluate RUN`)."]
    if base.get("error"):
        return ["", f"Baseline floor not computed: {text(base['error'])}"]
    lines = ["", "## Model vs trivial floor", "", "| " + " | ".join(HEADERS) + " |", "|---|" + "---:|" * 5]
    lines += ["| " + " | ".join(text(c) for c in row) + " |" for row in floor_rows(doc)]
    return [*lines, "", text(_describe(base))]
