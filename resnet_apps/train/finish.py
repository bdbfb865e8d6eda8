"""The end of a run: evaluate the best checkpoint, write metrics.json (ARCHITECTURE.md section 6), report.

The operating threshold is chosen on the validation predictions (``eval.operating_point``) and applied
unchanged to test. Bootstrap intervals resample whole groups (patients, tiles) when records have them.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resnet_apps.data.dataset import write_skipped
from resnet_apps.data.geo_facts import geo_summary
from resnet_apps.errors import RecipeError
from resnet_apps.io.atomic import atomic_path
from resnet_apps.train.datasets import recipe_dataset
from resnet_apps.train.distributed import is_main
from resnet_apps.train.evaluate import evaluate_block, operating_threshold, predict
from resnet_apps.train.run import Run, checkpoint_meta, data_hash, eval_loader, versions
from resnet_apps.train.rundir import git_commit, write_json
from resnet_apps.train.setup import rgb_positions


def finish(run: Run, net: nn.Module, log: Any = print) -> dict[str, Any] | None:
    """Best checkpoint -> val (threshold) -> test -> metrics.json, skipped.csv, gallery, report.html."""
    from resnet_apps.train.state import load_weights_into

    recipe, split, mode = run.recipe, run.split, run.mode
    best = run.run_dir / "checkpoints" / "best"
    load_weights_into(run.model, best)
    k = len(split.classes)
    evals: dict[str, Any] = {}
    threshold = None
    preds: dict[str, Any] = {}
    for name in ("val", recipe.eval.split):
        records = getattr(split, name)
        if not records or name in evals:
            continue
        dataset = recipe_dataset(records, recipe, run.norm, split.classes, train=False)
        out = predict(
            net,
            eval_loader(dataset, run),
            mode,
            k,
            run.device,
            recipe.train.precision,
            recipe.train.channels_last,
        )
        if name == "val":
            threshold = operating_threshold(out, mode, recipe.eval.operating_point)
        preds[name] = (dataset, out)
        if is_main():
            from resnet_apps.data.records import hash_id

            ids = [hash_id(records[i].path) for i in out["index"]]
            groups = [records[i].group for i in out["index"]]
            evals[name] = {
                "split": name,
                **evaluate_block(
                    out,
                    mode,
                    split.classes,
                    threshold=threshold,
                    groups=groups,
                    ids=ids,
                    n_boot=recipe.eval.bootstrap,
                    seed=recipe.data.split.seed,
                ),
            }
    if not is_main():
        return None
    test_name = recipe.eval.split if recipe.eval.split in evals else "val"
    best_epoch = run.loop.best_epoch
    headline = {b["name"]: b["value"] for b in evals[test_name].get("headline", [])}
    meta = checkpoint_meta(run, best_epoch, {"val": _headline(evals["val"]), test_name: headline}, threshold)
    from resnet_apps.train.state import save_weights

    save_weights(best, run.model, meta)
    gallery, overlays = _gallery(run, preds.get(test_name), threshold, log)
    if run.skipped:
        write_skipped(run.skipped, run.run_dir / "skipped.csv")  # formula-safe cells (io.tables)
    baseline = None
    if test_name in preds:
        from resnet_apps.train.baseline import baseline_block

        splits = {"train": split.train, "val": split.val, test_name: getattr(split, test_name)}
        baseline = baseline_block(
            recipe, splits, split.classes, run.norm, mode, test_name, preds[test_name][1], threshold, log
        )
    metrics = metrics_json(
        run, evals.get(test_name), evals.get("val"), gallery, overlays, threshold, baseline=baseline
    )
    save_metrics(run.run_dir, metrics)
    _summary(run, evals[test_name], test_name, log)
    if recipe.eval.report:
        render(run.run_dir, log)
    return metrics


def metrics_json(
    run: Run,
    evaluation: dict[str, Any] | None,
    validation: dict[str, Any] | None,
    gallery: list[dict[str, Any]],
    overlays: list[dict[str, Any]],
    threshold: Any,
    baseline: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """metrics.json of ARCHITECTURE.md section 6 (plain data only; no patient identifiers).

    ``baseline``: the trivial floor scored on the same split (``train.baseline.baseline_block``);
    ``convergence`` is derived from the history (``metrics.convergence``).
    """
    from resnet_apps.metrics.convergence import convergence

    recipe = run.recipe
    card = None
    if recipe.data.card:
        try:
            from resnet_apps.cards import load_card

            c = load_card(recipe.data.card)
            card = {"name": c.name, "front_matter": c.front_matter, "markdown": c.markdown}
        except Exception as error:  # a missing card must not lose a finished run's metrics
            card = {"name": recipe.data.card, "front_matter": {}, "markdown": f"(card not loaded: {error})"}
    info = run.model_info
    return {
        "schema_version": 1,
        "run": {
            "name": run.run_dir.name,
            "recipe": recipe.name,
            "task": recipe.task,
            "mode": run.mode,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "description": recipe.description,
            "backbone": recipe.model.backbone,
            "image_size": recipe.data.image_size,
            "overrides": list(run.overrides),
            "best_epoch": run.loop.best_epoch,
            "epochs_run": len(run.loop.history),
            "world_size": run.world,
            "device": str(run.device),
            "hardware": f"{platform.machine()}, torch threads {torch.get_num_threads()}",
        },
        "anchor": recipe.to_dict()["anchor"],
        "data_card": card,
        "split": {k: v for k, v in run.split.info.items()},
        "history": run.loop.history,
        "convergence": convergence(run.loop.history),
        "baseline": baseline,
        "evaluation": evaluation,
        "validation": validation,
        "operating_threshold": threshold,
        "geo": geo_summary(run.split.test or run.split.val, recipe.data.root, list(run.split.classes)),
        "normalisation": {
            "bands": run.band_names,
            "mean": run.norm[0],
            "std": run.norm[1],
            "source": run.norm_source,
        },
        "gradcam": gallery,
        "overlays": overlays,
        "skipped": run.skipped,
        "reproducibility": {
            "versions": versions(),
            "git_commit": git_commit(),
            "recipe_hash": recipe.recipe_hash(),
            "data_hash": data_hash(run.split),
            "seed": recipe.train.seed,
            "deterministic": recipe.train.deterministic,
            "weights_source": info["weights_source"],
            "imagenet_weights_used": info["imagenet_weights_used"],
            "weights_note": info.get("weights_note", ""),
        },
    }


def _headline(block: dict[str, Any]) -> dict[str, Any]:
    return {row["name"]: row["value"] for row in block.get("headline", [])}


def _gallery(
    run: Any, pred: Any, threshold: Any, log: Any
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Grad-CAM of right and wrong test cases (classification) via ``explain.save_gradcam_gallery``."""
    n = run.recipe.eval.gradcam
    if not n or pred is None:
        return [], []
    if run.mode == "segmentation":
        return [], _overlays(run, pred, n, log)
    from resnet_apps.models.explain import save_gradcam_gallery

    dataset, _ = pred
    try:  # the same band selection as conv1 (names, or 1-based numbers); default: the first three channels
        rgb = rgb_positions(run.recipe, run.band_names) if run.recipe.data.rgb_bands else None
    except RecipeError:
        rgb = None
    # candidates spread over the whole split: a split sorted by class would otherwise offer only its first class
    step = max(1, len(dataset) // (4 * n))
    samples = (dataset[i] for i in range(0, len(dataset), step))
    try:
        items = save_gradcam_gallery(
            run.model.cpu(),
            samples,
            run.split.classes,
            run.run_dir / "gallery",
            n=n,
            threshold=threshold,  # binary: one number; multi-label: one per class; None: 0.5
            positive_class=run.split.classes[-1] if run.mode == "binary" else None,
            rgb=rgb,
        )
    except Exception as error:  # the gallery illustrates; its failure must not lose the metrics
        log(f"note: Grad-CAM gallery not rendered ({type(error).__name__}: {error})")
        return [], []
    return items, []


def _overlays(run: Any, pred: Any, n: int, log: Any) -> list[dict[str, Any]]:
    """Reference (left) and predicted (right) class maps over the first ``n`` test images, as PNGs."""
    import matplotlib
    import numpy as np
    from PIL import Image

    from resnet_apps.constants import IGNORE_INDEX
    from resnet_apps.models.explain import display_image

    dataset, out = pred
    palette = (matplotlib.colormaps["tab10"](np.arange(10))[:, :3] * 255).astype(np.float32)  # RGBA -> RGB
    try:  # the same band selection as conv1 (names, or 1-based numbers); default: the first three channels
        rgb = rgb_positions(run.recipe, run.band_names) if run.recipe.data.rgb_bands else None
    except RecipeError:
        rgb = None
    model = run.model.cpu().eval()
    items = []
    for k in range(min(n, len(dataset))):
        sample = dataset[k]
        with torch.no_grad():
            predicted = model(sample["image"][None].float())[0].argmax(0).numpy()
        base = display_image(sample["image"], rgb).astype(np.float32)
        panels = []
        for classes in (sample["mask"].numpy(), predicted):
            colour = palette[np.clip(classes, 0, len(palette) - 1) % len(palette)]
            keep = (classes != IGNORE_INDEX)[..., None]
            panels.append(np.where(keep, 0.55 * base + 0.45 * colour, base))
        gap = np.full((base.shape[0], 4, 3), 255.0)
        path = run.run_dir / "gallery" / f"seg_{k + 1:04d}.png"
        picture = Image.fromarray(
            np.concatenate([panels[0], gap, panels[1]], axis=1).round().astype(np.uint8)
        )
        with atomic_path(path) as tmp:  # no truncated PNG under the final name after a kill
            picture.save(tmp, format="PNG")
        cm = out["confusions"][list(out["index"]).index(k)] if k in set(out["index"].tolist()) else None
        iou = ""
        if cm is not None:
            inter, union = np.diag(cm), cm.sum(0) + cm.sum(1) - np.diag(cm)
            iou = f"; mean IoU of this image {float(np.mean(inter[union > 0] / union[union > 0])):.3f}"
        names = ("blue", "orange", "green", "red", "purple", "brown", "pink", "grey", "olive", "cyan")
        legend = ", ".join(f"{c} {names[i % 10]}" for i, c in enumerate(run.split.classes))
        items.append(
            {
                "image": f"gallery/{path.name}",
                "caption": f"test image {k + 1}: reference (left), prediction (right){iou}; {legend}",
            }
        )
    return items


def _interval(row: dict[str, Any]) -> str:
    """``[low, high]``; a bound of 0.0 is a real bound, and None means no resample could compute it."""
    low, high = row.get("ci_low"), row.get("ci_high")
    if low is None or high is None or low != low or high != high:  # None or NaN
        return "(95 % CI undefined: the metric was undefined in every resample)"
    return f"[{low:.4f}, {high:.4f}]"


def _summary(run: Any, block: dict[str, Any], name: str, log: Any) -> None:
    rows = block.get("headline", [])[:3]
    text = ", ".join(f"{r['label']} {r['value']:.4f} {_interval(r)}" for r in rows if r["value"] is not None)
    log(f"{name}: {text}")
    if not run.model_info["imagenet_weights_used"]:
        log("note: the backbone did not start from ImageNet weights (see the report's reproducibility)")


def save_metrics(run_dir: Path, metrics: dict[str, Any]) -> None:
    """metrics.json through ``report.write_metrics`` (schema check, NaN -> null, atomic write)."""
    try:
        from resnet_apps.report import write_metrics
    except ImportError:
        write_json(run_dir / "metrics.json", metrics)
        return
    write_metrics(run_dir, metrics)


def render(run_dir: Path, log: Any = print) -> Path | None:
    """report.render_report(run_dir) when the report layer is installed; returns report.html."""
    try:
        from resnet_apps.report import render_report
    except ImportError:
        log("note: resnet_apps.report is not available; metrics.json written without an HTML report")
        return None
    render_report(run_dir)
    path = Path(run_dir) / "report.html"
    log(f"report: {path.resolve()}")
    return path
