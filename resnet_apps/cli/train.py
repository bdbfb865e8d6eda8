"""``resnet-apps train | evaluate | check | demo``: the main job and its companions.

``check`` stays torch-free (recipe + data card + data root only); the others import the training layer
inside their handlers.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from resnet_apps.io.writable import check_writable, writing


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this group's sub-commands to the top-level parser."""
    p = subparsers.add_parser("train", help="fine-tune a recipe into runs/<name>-<timestamp>")
    p.add_argument(
        "recipe", nargs="?", help="recipe YAML (omit with --resume: the run's saved recipe is used)"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe value, e.g. --set train.epochs=1 (repeatable)",
    )
    p.add_argument("--out", help="run directory (default runs/<recipe name>-<timestamp>; must not exist)")
    p.add_argument(
        "--resume", metavar="RUN_DIR", help="continue a run (after a crash or kill) from its last state"
    )
    p.add_argument("--runs-root", default="runs", help="parent folder of default run directories")
    p.set_defaults(handler=_train)

    p = subparsers.add_parser("evaluate", help="evaluate a run's best checkpoint on a split or on new data")
    p.add_argument("run_dir")
    p.add_argument(
        "--data",
        help="a data root laid out like the recipe's (evaluates all of it), or a DICOMweb service "
        "dicomweb+http(s)://HOST/ROOT with --labels",
    )
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--out", help="output folder (default RUN_DIR/evaluate-<split|data>-<timestamp>)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --data: data.* / eval.* for the new collection (e.g. data.source.kind=csv, "
        "data.source.group_pattern='(p\\d+)'); preprocessing stays the checkpoint's",
    )
    p.add_argument(
        "--map",
        dest="class_map",
        action="append",
        default=[],
        metavar="THEIR=OURS|FILE",
        help="with --data: their class name -> the model's (repeatable), or a YAML / two-column CSV file",
    )
    pacs = p.add_argument_group("DICOMweb (--data dicomweb+http(s)://...; auth as for predict)")
    pacs.add_argument(
        "--labels",
        metavar="LABELS.csv",
        help="class of each instance or study: columns label and SOPInstanceUID and/or StudyInstanceUID",
    )
    pacs.add_argument(
        "--study", action="append", default=[], metavar="UID", help="Study Instance UID (repeatable)"
    )
    pacs.add_argument("--query", default=None, help='QIDO-RS study filters, e.g. "ModalitiesInStudy=CR"')
    pacs.add_argument(
        "--group-by",
        choices=("patient", "study"),
        default="patient",
        help="confidence intervals resample patients (PatientID; the study when absent) or studies",
    )
    p.set_defaults(handler=_evaluate)

    p = subparsers.add_parser("check", help="validate a recipe (keys, types, card, data root) without torch")
    p.add_argument("recipe")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(handler=_check)

    p = subparsers.add_parser(
        "demo", help="train the demo recipe on the embedded EuroSAT-MS sample (< 5 min)"
    )
    p.add_argument("--runs-root", default="runs")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(handler=_demo)


def _offline_first(recipe_path: str, overrides: list[str]) -> None:
    """Refuse an unobtainable ImageNet request in seconds, before torch, timm and the data are loaded."""
    from resnet_apps.errors import WeightsUnavailableError
    from resnet_apps.recipe import load_recipe
    from resnet_apps.weights.hub import offline_early

    recipe = load_recipe(recipe_path, overrides)
    if recipe.model.on_missing_weights == "scratch":
        return  # the run goes on from random weights and says so
    message = offline_early(recipe.model.backbone, str(recipe.model.weights))
    if message is not None:
        raise WeightsUnavailableError(message)


def _train(args: argparse.Namespace) -> int:
    if args.recipe is None and args.resume is None:
        raise SystemExit("resnet-apps train: give a RECIPE, or --resume RUN_DIR")
    out, what = _train_output(args)
    check_writable(out, what)  # a read-only or misplaced --out fails now, not after the data is read
    if args.recipe is not None:  # before torch, timm and the data: seconds, not half a minute
        _offline_first(args.recipe, args.overrides)
    from resnet_apps.train.loop import train

    with writing(out, what, space_only=True):  # a full disk mid-run: typed, naming the folder
        train(args.recipe, args.overrides, out=args.out, resume=args.resume, runs_root=args.runs_root)
    return 0


def _train_output(args: argparse.Namespace) -> tuple[str, str]:
    """The folder ``train`` writes to and the option that named it."""
    if args.resume:
        return args.resume, "train --resume"
    if args.out:
        return args.out, "train --out"
    return args.runs_root, "train --runs-root"


def _evaluate(args: argparse.Namespace) -> int:
    from resnet_apps.errors import DicomWebError
    from resnet_apps.train.evaluate_run import evaluate_run

    dicomweb = str(args.data or "").startswith("dicomweb+")
    if dicomweb != (args.labels is not None) or (not dicomweb and (args.study or args.query)):
        raise DicomWebError(
            "evaluate: --labels, --study and --query go with --data dicomweb+http(s)://..., and a "
            "DICOMweb --data needs --labels LABELS.csv"
        )
    out = args.out or args.run_dir
    check_writable(out, "evaluate --out")
    if dicomweb:
        with writing(out, "evaluate --out", space_only=True):
            _evaluate_dicomweb(args)
        return 0
    with writing(out, "evaluate --out", space_only=True):
        evaluate_run(
            args.run_dir,
            data=args.data,
            split=args.split,
            out=args.out,
            overrides=args.overrides,
            class_map=args.class_map,
        )
    return 0


def _evaluate_dicomweb(args: argparse.Namespace) -> None:
    """Retrieve the labelled instances into a temporary folder, evaluate them as a new collection."""
    import json
    import tempfile

    from resnet_apps.errors import RunDirError
    from resnet_apps.models.checkpoint import find_checkpoint
    from resnet_apps.predict.dicomweb_labels import read_labels, retrieve_labelled
    from resnet_apps.predict.pacs import connect
    from resnet_apps.train.evaluate_data import IndexedData
    from resnet_apps.train.evaluate_run import evaluate_run

    meta = json.loads(find_checkpoint(args.run_dir, "best").with_suffix(".json").read_text())
    if meta.get("task", "classification") != "classification" or (meta.get("model") or {}).get("multilabel"):
        raise RunDirError(
            f"{args.run_dir}: evaluate from DICOMweb takes single-label classification runs (one class per "
            "instance or study in --labels)"
        )
    labels = read_labels(args.labels)  # before any request: a bad CSV fails in a second
    client = connect(args.data)
    with tempfile.TemporaryDirectory(prefix="resnet_apps_evaluate_dicomweb_") as tmp:
        retrieved = retrieve_labelled(
            client,
            tmp,
            labels,
            studies=args.study,
            query=args.query,
            group_by=args.group_by,
            progress=False,
        )
        print(
            f"retrieved {len(retrieved.records)} labelled instance(s) of {retrieved.studies} study(ies) in "
            f"{retrieved.seconds:.1f} s ({retrieved.seconds / max(retrieved.studies, 1):.2f} s per study)"
        )
        evaluate_run(
            args.run_dir,
            out=args.out,
            overrides=args.overrides,
            class_map=args.class_map,
            indexed=IndexedData(
                Path(tmp), retrieved.records, retrieved.classes, "dicomweb", retrieved.notes()
            ),
        )


def _check(args: argparse.Namespace) -> int:
    from resnet_apps.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    print(
        f"{args.recipe}: recipe {recipe.name!r} OK ({recipe.task}, {recipe.model.backbone}, "
        f"{recipe.train.epochs} epochs, metric {recipe.eval.metric})"
    )
    problems = []
    if recipe.data.card:
        from resnet_apps.cards import load_card
        from resnet_apps.errors import ResnetAppsError

        try:
            card = load_card(recipe.data.card)
            print(f"  data card: {card.name}")
        except ResnetAppsError as error:
            problems.append(f"data card: {error}")
    problems += _check_backbone(recipe.model.backbone)
    root = Path(recipe.data.root)
    if root.is_dir():
        print(f"  data root: {root}")
        if recipe.task == "segmentation":
            problems += _check_masks(recipe)
    else:
        print(f"  data root: {root} (not found here: fetch the data or set RESNET_APPS_DATA)")
    if recipe.anchor.value is not None:
        print(f"  aims at: {recipe.anchor.metric} {recipe.anchor.value} ({recipe.anchor.source})")
    for problem in problems:
        print(f"  problem: {problem}")
    return 1 if problems else 0


def _check_backbone(name: str) -> list[str]:
    """A backbone timm does not know (``resnet19``) is found here, not after the data is read.

    The names come from the installed timm's source (``resnet_family_offline``): check stays torch-free.
    Pretrained tags (``resnet50.a1_in1k``) are checked by ``train`` against timm itself.
    """
    import difflib

    from resnet_apps.weights.locations import resnet_family_offline

    family = resnet_family_offline()
    arch = name.partition(".")[0]
    if family is None or arch in family:
        return []
    close = difflib.get_close_matches(arch, family, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return [
        f"model.backbone = {name!r} is not a ResNet-family model of timm; {hint}fix: a name "
        "from resnet_apps.list_backbones() (resnet18/34/50/101/152, resnet50d, wide_resnet50_2, ...)"
    ]


def _check_masks(recipe: Any) -> list[str]:
    """Sample a few masks: codes the recipe does not map, and masks with no labelled pixel at all."""
    from resnet_apps.data.config import as_source_config
    from resnet_apps.data.mask_check import sample_masks
    from resnet_apps.data.records import build_records
    from resnet_apps.errors import ResnetAppsError

    try:
        records, classes = build_records(recipe.data.source, recipe.data.root, recipe.data.classes)
    except ResnetAppsError as error:
        return [f"data: {error}"]
    cfg = as_source_config(recipe.data.source)
    found = sample_masks(records, recipe.data.root, cfg, len(classes))
    problems = [f"mask: {error}" for error in found.errors]
    declared = (
        "data.source.mask_values" if cfg.mask_values is not None else f"data.classes (0..{len(classes) - 1})"
    )
    for path, codes in found.unmapped.items():
        shown = "{" + ", ".join(map(str, codes[:12])) + (", ..." if len(codes) > 12 else "") + "}"
        note = f"{path}: mask values {shown} are not among {declared}; those pixels are ignored"
        if path in found.unlabelled:
            problems.append(
                f"{note}, and no pixel of it is labelled (training would find no labelled pixel); fix: "
                "map the codes with data.source.mask_values (code: class index)"
            )
        else:
            print(f"  note: {note}")
    if found.files:
        print(f"  masks: {found.files} sampled, {len(found.unlabelled)} without a labelled pixel")
    return problems


def demo_recipe_path() -> Path:
    """The packaged demo recipe (recipes/demo.yaml in a checkout links to it)."""
    return Path(__file__).resolve().parents[1] / "demo_data" / "demo.yaml"


def _demo(args: argparse.Namespace) -> int:
    from resnet_apps.train.loop import train

    started = time.perf_counter()
    check_writable(args.runs_root, "demo --runs-root")
    with writing(args.runs_root, "demo --runs-root", space_only=True):
        run_dir = train(demo_recipe_path(), args.overrides, runs_root=args.runs_root)
    report = run_dir / "report.html"
    print(f"demo finished in {time.perf_counter() - started:.0f} s")
    print(f"report: {report.resolve() if report.is_file() else run_dir / 'metrics.json'}")
    return 0
