"""metrics.json: the versioned, machine-readable record of a run, and its validation (stdlib + numpy only).

The layout is documented in docs/ARCHITECTURE.md section 6. ``write_metrics`` is what the trainer calls; it
validates before writing (atomically), so a report can always be re-rendered from the file alone.
"""

from __future__ import annotations

import json
import math
from pathlib import Path, PurePosixPath
from typing import Any

from resnet_apps.errors import ReportError
from resnet_apps.io.atomic import atomic_write_text

SCHEMA_VERSION = 1
METRICS_FILE = "metrics.json"
TASKS = ("classification", "segmentation")
MODES = ("binary", "multiclass", "multilabel", "segmentation")


def to_jsonable(value: Any) -> Any:
    """Plain JSON data from numpy scalars / arrays, tuples, Paths; NaN and inf become None."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy array or scalar
        return to_jsonable(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return value.as_posix()
    return value


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_relative(path: Any, field: str, problems: list[str]) -> None:
    if not isinstance(path, str) or not path:
        problems.append(f"{field}: expected a path relative to the run directory, got {path!r}")
        return
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or "\\" in path:
        problems.append(f"{field}: {path!r} must be relative to the run directory, with '/' and no '..'")


def _check_evaluation(ev: Any, field: str, problems: list[str]) -> None:
    if not isinstance(ev, dict):
        problems.append(
            f"{field}: expected an object (the output of evaluate_classification / _segmentation)"
        )
        return
    if ev.get("kind") not in TASKS:
        problems.append(f"{field}.kind: {ev.get('kind')!r} must be one of {list(TASKS)}")
    if ev.get("mode") not in MODES:
        problems.append(f"{field}.mode: {ev.get('mode')!r} must be one of {list(MODES)}")
    classes = ev.get("classes")
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        problems.append(f"{field}.classes: expected a list of class names")
    headline = ev.get("headline")
    if not isinstance(headline, list) or not headline:
        problems.append(f"{field}.headline: expected a non-empty list of {{name, value, ci_low, ci_high}}")
        headline = []
    for i, row in enumerate(headline):
        if not isinstance(row, dict) or not isinstance(row.get("name"), str):
            problems.append(f"{field}.headline[{i}]: expected an object with a string 'name'")
            continue
        for key in ("value", "ci_low", "ci_high"):
            if row.get(key) is not None and not _is_num(row.get(key)):
                problems.append(f"{field}.headline[{i}].{key}: {row.get(key)!r} must be a number or null")
    if not isinstance(ev.get("per_class", []), list):
        problems.append(f"{field}.per_class: expected a list of per-class rows")
    confusion = ev.get("confusion")
    if confusion is not None:
        labels, matrix = confusion.get("labels"), confusion.get("matrix")
        if (
            not isinstance(labels, list)
            or not isinstance(matrix, list)
            or len(matrix) != len(labels)
            or any(not isinstance(r, list) or len(r) != len(labels) for r in matrix)
        ):
            problems.append(f"{field}.confusion: matrix must be square with one row and column per label")
    boot = ev.get("bootstrap")
    if not isinstance(boot, dict) or not isinstance(boot.get("n_boot"), int):
        problems.append(f"{field}.bootstrap: expected {{method, n_boot, seed, ci, unit, n_units}}")


def _check_list_of(doc: dict, key: str, required: tuple[str, ...], problems: list[str]) -> None:
    items = doc.get(key, [])
    if not isinstance(items, list):
        problems.append(f"{key}: expected a list")
        return
    for i, item in enumerate(items):
        if not isinstance(item, dict) or any(k not in item for k in required):
            problems.append(f"{key}[{i}]: expected an object with keys {list(required)}")
        elif "image" in required:
            _check_relative(item["image"], f"{key}[{i}].image", problems)


def validate_metrics(doc: Any, source: str = METRICS_FILE) -> dict[str, Any]:
    """Check a metrics document against schema version 1; return it unchanged.

    Raises:
        ReportError: listing every problem as ``<source>: <field>: <what is wrong and the fix>``.
    """
    problems: list[str] = []
    if not isinstance(doc, dict):
        raise ReportError(f"{source}: expected a JSON object at the top level")
    version = doc.get("schema_version")
    if version != SCHEMA_VERSION:
        problems.append(
            f"schema_version: {version!r}; this resnet_apps reads version {SCHEMA_VERSION} "
            "(re-run `resnet-apps evaluate` to rewrite it)"
        )
    run = doc.get("run")
    if not isinstance(run, dict) or not isinstance(run.get("name"), str) or run.get("task") not in TASKS:
        problems.append(f"run: expected {{name: str, task: one of {list(TASKS)}, ...}}")
    if "evaluation" not in doc:
        problems.append("evaluation: missing; metrics.json needs the test-split evaluation")
    else:
        _check_evaluation(doc["evaluation"], "evaluation", problems)
    if doc.get("validation") is not None:
        _check_evaluation(doc["validation"], "validation", problems)
    base = doc.get("baseline")
    if isinstance(base, dict) and "evaluation" in base:
        _check_evaluation(base["evaluation"], "baseline.evaluation", problems)
    elif base is not None and not (isinstance(base, dict) and "error" in base):
        problems.append("baseline: expected {evaluation, difference, ...}, {error} or null")
    for key in ("anchor", "data_card", "split", "reproducibility", "convergence"):
        if doc.get(key) is not None and not isinstance(doc[key], dict):
            problems.append(f"{key}: expected an object or null")
    anchor = doc.get("anchor") or {}
    if anchor.get("value") is not None and not _is_num(anchor.get("value")):
        problems.append("anchor.value: must be a number (the published figure) or null")
    history = doc.get("history", [])
    if not isinstance(history, list) or any(
        not isinstance(h, dict) or not _is_num(h.get("epoch")) for h in history
    ):
        problems.append("history: expected a list of {epoch, train_loss, val_loss, val_metric, ...}")
    _check_list_of(doc, "gradcam", ("image",), problems)
    _check_list_of(doc, "overlays", ("image",), problems)
    _check_list_of(doc, "skipped", ("path", "reason"), problems)
    if problems:
        raise ReportError(f"{source} is not a valid metrics document:\n  " + "\n  ".join(problems))
    return doc


def load_metrics(run_dir_or_file: str | Path) -> dict[str, Any]:
    """Read and validate ``RUN_DIR/metrics.json`` (or the file itself)."""
    path = Path(run_dir_or_file)
    if path.is_dir():
        path = path / METRICS_FILE
    if not path.is_file():
        raise ReportError(
            f"{path}: not found; a run directory holds metrics.json once `train` or `evaluate` "
            "has finished (pass the run directory)"
        )
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ReportError(
            f"{path}: not valid JSON ({error}); re-run `resnet-apps evaluate` to rewrite it"
        ) from error
    return validate_metrics(doc, str(path))


def write_metrics(run_dir: str | Path, doc: dict[str, Any]) -> Path:
    """Validate ``doc`` and write ``RUN_DIR/metrics.json`` atomically (temp file + os.replace), no NaN."""
    clean = to_jsonable({"schema_version": SCHEMA_VERSION, **doc})
    validate_metrics(clean, str(Path(run_dir) / METRICS_FILE))
    return write_text_atomic(
        Path(run_dir) / METRICS_FILE, json.dumps(clean, indent=1, allow_nan=False) + "\n"
    )


def write_text_atomic(path: Path, text: str) -> Path:
    """Write a text file atomically (reports are rewritten in place on re-render)."""
    return atomic_write_text(path, text)
