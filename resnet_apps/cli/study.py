"""``resnet-apps study degradation RECIPE_OR_DATA``: plain vs residual CIFAR nets by depth (He et al. 2016, Fig. 6)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``study`` command group to the top-level parser."""
    study = subparsers.add_parser("study", help="studies that test a claim on your data (degradation)")
    commands = study.add_subparsers(dest="study", metavar="STUDY", required=True)
    p = commands.add_parser(
        "degradation",
        help="train plain and residual nets of several depths and seeds; report the training-error ordering",
        description="Train CIFAR-style plain and residual nets (depth 6n+2, 16/32/64 filters) with the paper's "
        "protocol on a folder of class folders (or a recipe's data.root) resized to 32 px, stratified split. "
        "Writes OUT/study.json, OUT/report.html, OUT/fig6.png. Resumable per epoch with --resume OUT.",
    )
    p.add_argument(
        "source",
        nargs="?",
        metavar="RECIPE_OR_DATA",
        help="a recipe YAML (its data.root, folder source; flip when data.augment is nadir) or a data folder "
        "root/<class>/<image>; omit with --resume",
    )
    p.add_argument("--depths", default="20,56", help="comma-separated depths 6n+2 (default 20,56)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    p.add_argument("--epochs", type=int, default=12, help="epochs per network (default 12)")
    p.add_argument("--test-fraction", type=float, default=0.2, help="held-out share per class (default 0.2)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the stratified split (default 0)")
    p.add_argument(
        "--no-flip", action="store_true", help="no horizontal flips (a data folder's default is flip)"
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads per training process (default 1)")
    p.add_argument(
        "--jobs", type=int, default=1, help="networks trained at once in separate processes (default 1)"
    )
    p.add_argument("--out", help="output folder (default runs/degradation-<timestamp>)")
    p.add_argument("--resume", metavar="DIR", help="continue the study in DIR with its saved settings")
    p.set_defaults(handler=_degradation)


def _source(args: argparse.Namespace) -> tuple[str, bool]:
    """(data folder, flip allowed) from a recipe or a folder."""
    from resnet_apps.errors import RecipeError

    path = Path(args.source)
    if path.is_dir():
        return str(path), not args.no_flip
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise RecipeError(
            f"{path}: neither a data folder nor a recipe YAML; give root/<class>/<image> or a recipe"
        )
    from resnet_apps.recipe import load_recipe

    recipe = load_recipe(path)
    if recipe.task != "classification" or recipe.data.source.kind != "folder":
        raise RecipeError(
            f"{path}: the degradation study needs a classification recipe with data.source kind folder "
            f"(got task {recipe.task}, source {recipe.data.source.kind}); or pass the data folder itself"
        )
    return recipe.data.root, recipe.data.augment == "nadir" and not args.no_flip


def _degradation(args: argparse.Namespace) -> int:
    import json
    import time

    from resnet_apps.study.degradation import Protocol
    from resnet_apps.study.runner import CONFIG_FILE, StudyConfig, parse_ints, run_study

    if args.resume:
        out = Path(args.resume)
        config_path = out / CONFIG_FILE
        if not config_path.is_file():
            raise SystemExit(
                f"resnet-apps study degradation: {config_path} not found; is {out} a study folder?"
            )
        config = StudyConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
    else:
        if args.source is None:
            raise SystemExit("resnet-apps study degradation: give RECIPE_OR_DATA, or --resume DIR")
        root, flip = _source(args)
        try:
            depths, seeds = parse_ints(args.depths, "--depths"), parse_ints(args.seeds, "--seeds")
        except ValueError as error:
            raise SystemExit(f"resnet-apps study degradation: {error}") from error
        bad = [d for d in depths if d < 8 or (d - 2) % 6]
        if bad or args.epochs < 1:
            raise SystemExit(
                f"resnet-apps study degradation: depths must be 6n+2 (20, 32, 44, 56, ...), got {bad}; epochs >= 1"
            )
        config = StudyConfig(
            data_root=root,
            depths=depths,
            seeds=seeds,
            protocol=Protocol(epochs=args.epochs, flip=flip),
            test_fraction=args.test_fraction,
            split_seed=args.split_seed,
            threads=args.threads,
            jobs=args.jobs,
        )
        out = Path(args.out or f"runs/degradation-{time.strftime('%Y%m%d-%H%M%S')}")
    path = run_study(config, out, resume=bool(args.resume))
    print(f"study: {path}\nreport: {out / 'report.html'}")
    return 0
