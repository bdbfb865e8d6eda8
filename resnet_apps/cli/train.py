"""``resnet-apps train | evaluate | check | demo``: the main job and its companions.

``check`` stays torch-free (recipe + data card + data root only); the others import the training layer
inside their handlers.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


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
    p.add_argument("--data", help="a data root laid out like the recipe's (evaluates all of it)")
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
    if args.recipe is not None:
        _offline_first(args.recipe, args.overrides)
    from resnet_apps.train.loop import train

    train(args.recipe, args.overrides, out=args.out, resume=args.resume, runs_root=args.runs_root)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from resnet_apps.train.evaluate_run import evaluate_run

    evaluate_run(
        args.run_dir,
        data=args.data,
        split=args.split,
        out=args.out,
        overrides=args.overrides,
        class_map=args.class_map,
    )
    return 0


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
    root = Path(recipe.data.root)
    if root.is_dir():
        print(f"  data root: {root}")
    else:
        print(f"  data root: {root} (not found here: fetch the data or set RESNET_APPS_DATA)")
    if recipe.anchor.value is not None:
        print(f"  aims at: {recipe.anchor.metric} {recipe.anchor.value} ({recipe.anchor.source})")
    for problem in problems:
        print(f"  problem: {problem}")
    return 1 if problems else 0


def demo_recipe_path() -> Path:
    """The packaged demo recipe (recipes/demo.yaml in a checkout links to it)."""
    return Path(__file__).resolve().parents[1] / "demo_data" / "demo.yaml"


def _demo(args: argparse.Namespace) -> int:
    from resnet_apps.train.loop import train

    started = time.perf_counter()
    run_dir = train(demo_recipe_path(), args.overrides, runs_root=args.runs_root)
    report = run_dir / "report.html"
    print(f"demo finished in {time.perf_counter() - started:.0f} s")
    print(f"report: {report.resolve() if report.is_file() else run_dir / 'metrics.json'}")
    return 0
