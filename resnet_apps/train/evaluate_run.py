"""``resnet-apps evaluate RUN_DIR [--data DIR] [--split test]``: a trained run on a split or on new data.

The model and its preprocessing come from the run's best checkpoint (``checkpoint.load_run``), the
operating threshold from the checkpoint too (it was chosen on the run's validation split), so new data
is judged exactly as the run's own test split was. Results go to a new folder inside the run
(``evaluate-<name>-<timestamp>/``: metrics.json + report); the training results are never overwritten.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from resnet_apps.errors import RunDirError
from resnet_apps.recipe import TaskMode, load_recipe
from resnet_apps.train.datasets import (
    SplitData,
    drop_unreadable,
    recipe_dataset,
    split_info,
    split_records,
)
from resnet_apps.train.evaluate import evaluate_block, predict
from resnet_apps.train.evaluate_data import (
    IndexedData,
    labelled_records,
    new_data_recipe,
    new_data_records,
    parse_class_map,
)
from resnet_apps.train.run import LoopState, Run, eval_loader


def evaluate_run(
    run_dir: str | Path,
    data: str | Path | None = None,
    split: str = "test",
    out: str | Path | None = None,
    log: Any = print,
    overrides: Sequence[str] = (),
    class_map: Sequence[str] = (),
    indexed: IndexedData | None = None,
) -> Path:
    """Evaluate a run's best checkpoint; returns the folder holding metrics.json and the report.

    Args:
        run_dir: the run.
        data: a new collection (``train.evaluate_data``: its own layout, class names, no groups needed).
        split: the run's split to evaluate when ``data`` is None.
        out: output folder (default ``RUN_DIR/evaluate-<split|data-NAME>-<timestamp>``).
        log: console printer.
        overrides: ``data.*`` / ``eval.*`` assignments for the new data (``--set``).
        class_map: ``their=ours`` items or mapping files (``--map``).
        indexed: new data already indexed (instances retrieved from a PACS), instead of ``data``;
            its unreadable files are left out and counted in the notes.
    """
    from resnet_apps.data.records import hash_id
    from resnet_apps.models.checkpoint import load_run
    from resnet_apps.train.finish import metrics_json, render, save_metrics

    run_dir = Path(run_dir)
    if not (run_dir / "recipe.yaml").is_file():
        raise RunDirError(f"{run_dir}: not a resnet_apps run directory (no recipe.yaml)")
    if data is not None and indexed is not None:
        raise RunDirError("evaluate: give new data as a folder or as indexed records, not both")
    if data is None and indexed is None and (overrides or class_map):
        raise RunDirError("evaluate: --set and --map describe new data; give it with --data DIR")
    recipe = load_recipe(run_dir / "recipe.yaml")
    model, meta = load_run(run_dir, "best")
    pre = meta.require_preprocessing()
    classes = list(meta.classes)
    notes: list[str] = []
    if indexed is not None:
        if meta["task"] != "classification" or meta["model"].get("multilabel"):
            raise RunDirError(
                f"{run_dir}: labelled instances carry one class each; this {meta['task']} run "
                f"{'(multi-label) ' if meta['model'].get('multilabel') else ''}cannot be evaluated on them"
            )
        # no array cache: decoded images of retrieved instances must not outlive their temporary folder
        recipe = new_data_recipe(run_dir / "recipe.yaml", indexed.root, [*overrides, "data.cache=false"])
        records, notes = labelled_records(
            indexed.records, indexed.classes, list(meta["classes"]), parse_class_map(class_map)
        )
        split_data = SplitData([], [], records, list(meta["classes"]))
        # one undecodable instance never stops the evaluation: read each once, leave the bad ones out
        skipped = drop_unreadable(split_data, recipe, log=lambda _message: None)
        notes = [*indexed.notes, *notes]
        if skipped:
            notes.append(f"{len(skipped)} instance(s) could not be decoded: left out.")
        name = f"data-{indexed.name}"
    elif data is not None:
        # every record of the new data is evaluated; its own split column and groups are not forced on it
        recipe = new_data_recipe(run_dir / "recipe.yaml", data, overrides)
        records, notes = new_data_records(
            recipe,
            classes,
            meta.task,
            meta.model.multilabel,
            parse_class_map(class_map),
        )
        split_data = SplitData([], [], records, classes)
        split_data.info = split_info({"train": [], "val": [], "test": records}, split_data.classes, recipe)
        name = f"data-{Path(data).name}"
    else:
        split_data = split_records(recipe)
        saved_all = json.loads((run_dir / "split.json").read_text())["records"]
        _restore_fit_splits(split_data, saved_all, split)
        saved = saved_all.get(split, [])
        current = [r.path for r in getattr(split_data, split)]
        wanted = [r["path"] for r in saved]
        by_path = {r.path: r for part in (split_data.train, split_data.val, split_data.test) for r in part}
        if current != wanted and wanted and all(path in by_path for path in wanted):
            # same files, other groups: group hashes are keyed (io.identity), so a machine with another
            # key (or a run from before keyed hashes) rebuilds another group split; the run's own wins
            setattr(split_data, split, [by_path[path] for path in wanted])
            log(
                f"note: the {split} split rebuilt from the recipe differs from the run's split.json (another "
                "identifier hash key than at training, see README 'Identifier hashes'); evaluating the "
                f"run's own {split} split from split.json"
            )
        elif current != wanted:
            log(
                f"note: the {split} split rebuilt from the recipe differs from the run's split.json "
                "(the data folder changed since training)"
            )
        name = split
    records = getattr(split_data, "test" if data is not None or indexed is not None else split)
    if not records:
        raise RunDirError(f"{run_dir}: the {split} split is empty; choose another --split")
    mode: TaskMode = meta.mode
    if pre.mean is None or pre.std is None:
        raise RunDirError(
            f"{meta.source}: preprocessing.mean / std are null; evaluate needs the run's band statistics "
            "(retrain, or restore the checkpoint JSON)"
        )
    norm = (list(pre.mean), list(pre.std))
    info = {
        **meta.raw["model"],
        "weights_source": meta.weights_source,
        "imagenet_weights_used": meta.imagenet_weights_used,
    }
    history = (
        json.loads((run_dir / "history.json").read_text()) if (run_dir / "history.json").is_file() else []
    )
    run = Run(
        recipe,
        Path(out) if out else run_dir / f"evaluate-{name}-{time.strftime('%Y%m%d-%H%M%S')}",
        torch.device("cpu"),
        1,
        split_data,
        mode,
        [str(b) for b in pre.bands or ()],
        norm,
        "checkpoint",
        model,
        info,
        loop=LoopState(history=history, best_epoch=meta.epoch or 0),
        # the --set values the run was trained with (seed included): a re-evaluation is still that run
        overrides=_run_overrides(run_dir),
    )
    run.run_dir.mkdir(parents=True, exist_ok=False)
    k = len(split_data.classes)
    dataset = recipe_dataset(records, recipe, norm, split_data.classes, train=False)
    outputs = predict(model, eval_loader(dataset, run), mode, k, run.device)
    # multi-label: one threshold per class (chosen on the run's validation split), as predict applies them
    threshold = list(meta.thresholds()) if meta.model.multilabel else meta.operating_threshold
    block = {
        "split": name,
        **({"notes": notes} if notes else {}),
        **evaluate_block(
            outputs,
            mode,
            split_data.classes,
            threshold=threshold,
            groups=[records[i].group for i in outputs["index"]],
            ids=[hash_id(records[i].path) for i in outputs["index"]],
            n_boot=recipe.eval.bootstrap,
            seed=recipe.data.split.seed,
        ),
    }
    baseline = None
    if data is None and indexed is None:
        from resnet_apps.train.baseline import baseline_block

        splits = {"train": split_data.train, "val": split_data.val, name: records}
        baseline = baseline_block(
            recipe, splits, split_data.classes, norm, mode, name, outputs, threshold, log
        )
    else:
        baseline = {
            "error": "not computed for new data (the floor is fitted and scored on the run's own split)"
        }
    metrics = metrics_json(run, block, None, [], [], threshold, baseline=baseline)
    metrics["run"]["evaluated_run"] = run_dir.name
    save_metrics(run.run_dir, metrics)
    rows = block.get("headline", [])[:3]
    log(f"{name}: " + ", ".join(f"{r['label']} {r['value']:.4f}" for r in rows if r["value"] is not None))
    for note in notes:
        log(f"note: {note}")
    render(run.run_dir, log)
    return run.run_dir


def _restore_fit_splits(split_data: SplitData, saved: dict[str, Any], evaluated: str) -> None:
    """The run's own train / val records from split.json (what the baseline floor is fitted on) when every
    saved path is still indexed; the evaluated split itself is handled (and logged) by the caller."""
    by_path = {r.path: r for part in (split_data.train, split_data.val, split_data.test) for r in part}
    for name in ("train", "val"):
        wanted = [r["path"] for r in saved.get(name, [])]
        if name != evaluated and wanted and all(path in by_path for path in wanted):
            setattr(split_data, name, [by_path[path] for path in wanted])


def _run_overrides(run_dir: Path) -> list[str]:
    """The ``--set`` values saved with the run (``overrides.json``), [] for runs without the file."""
    path = run_dir / "overrides.json"
    return [str(o) for o in json.loads(path.read_text())] if path.is_file() else []
