"""Recipes: YAML in our own vocabulary, loaded into frozen dataclasses (no torch).

A recipe names *what* to train (data, model, schedule, evaluation, the published number it aims at),
never constructor signatures. Loading is strict: an unknown key is an error that suggests the nearest
valid key, values are type-checked, and dotted overrides (``train.epochs=1``) go through the same
checks. Paths in ``data.root`` may use ``${VAR:-default}`` and resolve against the recipe's folder::

    recipe = load_recipe("recipes/eurosat_ms_resnet50.yaml", overrides=["train.epochs=1"])
    recipe.train.epochs        # 1
    recipe.to_dict()           # plain data, saved as recipe.yaml in the run directory

``RESNET_APPS_DATA`` (the folder that holds ``eurosat_ms/``, ``chest_xray_pneumonia_kermany/``, ...)
overrides the default data parent of the shipped recipes, which is ``../../shared/data`` from
``recipes/``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from resnet_apps.errors import RecipeError
from resnet_apps.recipe.schema import (
    AnchorConfig,
    DataConfig,
    EvalConfig,
    Head,
    MaskEncoding,
    ModelConfig,
    Pooling,
    Precision,
    Recipe,
    Schedule,
    SourceConfig,
    SourceKind,
    SplitConfig,
    Stem,
    Task,
    TaskMode,
    TrainConfig,
)

# the vocabulary is re-exported: callers import Recipe, TaskMode, ... from here or from recipe.schema
__all__ = [
    "AnchorConfig",
    "DataConfig",
    "EvalConfig",
    "Head",
    "Schedule",
    "Stem",
    "MaskEncoding",
    "ModelConfig",
    "Pooling",
    "Precision",
    "Recipe",
    "SourceConfig",
    "SourceKind",
    "SplitConfig",
    "Task",
    "TaskMode",
    "TrainConfig",
    "load_recipe",
    "recipe_from_dict",
    "safe_load_no_alias",
]

# allowed values of the string choices: field path -> allowed set (a literal table, checked after typing)
_CHOICES: dict[str, tuple[str, ...]] = {
    "data.normalize": ("card", "imagenet", "none"),
    "data.split.method": ("stratified", "group", "column", "spatial", "random"),
    "data.split.on_leak": ("fail", "drop_train"),
    "data.augment": ("nadir", "chest_xray", "none"),
    "data.on_error": ("fail", "skip"),
    "model.on_missing_weights": ("fail", "scratch"),
    "model.conv1_init": ("timm", "rgb_bands"),
    "train.optimizer": ("adamw", "sgd"),
    "train.sampler": ("none", "weighted"),
    "eval.metric": ("accuracy", "balanced_accuracy", "kappa", "f1_macro", "auroc", "miou", "dice"),
    "eval.split": ("test", "val"),
}
_OPERATING_POINT = re.compile(r"^(youden|(sensitivity|specificity):(0(\.\d+)?|1(\.0+)?)|fixed:\d*\.?\d+)$")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_ENV = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


# --- loading ------------------------------------------------------------------------------------


class _NoAliasLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses anchors and aliases.

    A recipe never needs them, and nested aliases expand exponentially: a 1 KB "billion laughs" file
    kept ``check`` busy for minutes. Refused at the first ``&anchor`` / ``*alias``, before any expansion.
    """

    def compose_node(self, parent: Any, index: Any) -> Any:  # noqa: D102 - see the class docstring
        if self.check_event(yaml.AliasEvent) or getattr(self.peek_event(), "anchor", None) is not None:
            event = self.peek_event()
            mark = event.start_mark
            raise yaml.constructor.ConstructorError(
                None,
                None,
                "YAML anchors and aliases (&name / *name) are not allowed in recipes; write the values "
                "out in full",
                mark,
            )
        return super().compose_node(parent, index)


def safe_load_no_alias(text: str) -> Any:
    """``yaml.safe_load`` without anchors or aliases (see ``_NoAliasLoader``)."""
    loader = _NoAliasLoader(text)  # what yaml.safe_load does, with our SafeLoader subclass
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read a recipe YAML, apply ``key.path=value`` overrides, check every key, type and choice.

    Args:
        path: the recipe file; relative ``data.root`` resolves against its folder.
        overrides: dotted assignments such as ``train.epochs=1`` or ``data.bands=[B04, B03, B02]``;
            values are parsed as YAML (so lists and numbers work) and type-checked like the file.

    Raises:
        RecipeError: naming the file, the field and the fix.
    """
    path = Path(path)
    if not path.is_file():
        raise RecipeError(
            f"{path}: recipe file not found (give the path to a .yaml file, e.g. recipes/demo.yaml)"
        )
    try:
        raw = safe_load_no_alias(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise RecipeError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe is a YAML mapping with name, task, data, model, train, eval")
    return recipe_from_dict(raw, base_dir=path.resolve().parent, overrides=overrides, origin=str(path))


def recipe_from_dict(
    raw: dict[str, Any],
    base_dir: str | Path = ".",
    overrides: list[str] | tuple[str, ...] = (),
    origin: str = "<recipe>",
) -> Recipe:
    """Build a checked ``Recipe`` from plain data (a loaded YAML file or a run's saved recipe)."""
    raw = _normalise(json.loads(json.dumps(raw, default=str)))  # deep copy; our own edits stay local
    for assignment in overrides:
        _apply_override(raw, assignment, origin)
    recipe = _build(Recipe, raw, "", origin)
    _check_choices(recipe, origin)
    _check_name(recipe.name, origin)
    root = _expand_env(recipe.data.root)
    root_path = Path(root) if Path(root).is_absolute() else (Path(base_dir) / root)
    data = dataclasses.replace(recipe.data, root=os.path.normpath(str(root_path)))
    return dataclasses.replace(recipe, data=data)


_NAME = re.compile(r"\w([\w.+ -]{0,98}[\w.+-])?")  # \w: letters and digits of any script, and _


def _check_name(name: str, origin: str) -> None:
    """The name becomes a folder under --runs-root: no path separators, no '..', no leading dot."""
    if not _NAME.fullmatch(name) or ".." in name:
        raise RecipeError(
            f"{origin}: name = {name!r} cannot name a run folder under --runs-root (it must not hold '/', "
            "'\\', '..', nor start with '.' or a space); fix: letters, digits, '.', '_', '-', '+' and inner "
            "spaces only, at most 100 characters, e.g. "
            "name: eurosat_ms_resnet50"
        )


def _normalise(raw: dict[str, Any]) -> dict[str, Any]:
    """Accept the short form ``data.source: folder`` as ``{kind: folder}``."""
    data = raw.get("data")
    if isinstance(data, dict) and isinstance(data.get("source"), str):
        data["source"] = {"kind": data["source"]}
    return raw


def _apply_override(raw: dict[str, Any], assignment: str, origin: str) -> None:
    if "=" not in assignment:
        raise RecipeError(f"override {assignment!r}: write it as key.path=value, e.g. train.epochs=1")
    key, _, text = assignment.partition("=")
    parts = [p for p in key.strip().split(".") if p]
    try:
        value = safe_load_no_alias(text) if text.strip() else None
    except yaml.YAMLError:
        value = text  # a plain string with YAML-special characters
    cls: Any = Recipe
    node = raw
    for depth, part in enumerate(parts):
        names = {f.name: f for f in dataclasses.fields(cls)}
        if part not in names:
            where = ".".join(parts[:depth]) or "top level"
            raise RecipeError(
                f"override {assignment!r}: unknown key {part!r} in {where}{_suggest(part, names)}"
            )
        if depth == len(parts) - 1:
            node[part] = value
            return
        sub_cls = _hints(cls)[part]
        if not dataclasses.is_dataclass(sub_cls):
            raise RecipeError(
                f"override {assignment!r}: {'.'.join(parts[: depth + 1])} is a value, not a section"
            )
        if part == "source" and isinstance(node.get(part), str):
            node[part] = {"kind": node[part]}
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise RecipeError(f"{origin}: {'.'.join(parts[: depth + 1])} must be a mapping")
        cls = sub_cls


def _suggest(word: str, valid: Any) -> str:
    close = difflib.get_close_matches(word, list(valid), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(sorted(valid))}"


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _build(cls: type, raw: Any, where: str, origin: str) -> Any:
    label = where or "top level"
    if not isinstance(raw, dict):
        raise RecipeError(f"{origin}: {label} must be a mapping, got {type(raw).__name__}")
    hints = _hints(cls)
    names = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in names:
            raise RecipeError(f"{origin}: unknown key {key!r} in {label}{_suggest(str(key), names)}")
    values = {}
    for name, f in names.items():
        dotted = f"{where}.{name}" if where else name
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise RecipeError(f"{origin}: missing required key {dotted!r}")
            continue
        tp = hints[name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            values[name] = _build(tp, raw[name] if raw[name] is not None else {}, dotted, origin)
        else:
            values[name] = _coerce(raw[name], tp, dotted, origin)
    return cls(**values)


def _coerce(value: Any, tp: Any, where: str, origin: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted where floats are expected."""
    origin_tp = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin_tp in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, where, origin)
            except RecipeError:
                continue
        raise RecipeError(f"{origin}: {where} = {value!r} has the wrong type (expected {_name(tp)})")
    if origin_tp is Literal:
        if value not in args or isinstance(value, bool):  # True == 1: a bool is never a choice
            _not_allowed(value, args, where, origin)
        return value
    if origin_tp is list:
        if not isinstance(value, list):
            raise RecipeError(f"{origin}: {where} must be a list (YAML [a, b]), got {value!r}")
        return [_coerce(v, args[0], f"{where}[{i}]", origin) for i, v in enumerate(value)] if args else value
    if origin_tp is tuple:  # tuple[X, ...]: written as a YAML list, stored as a tuple (frozen, hashable)
        if not isinstance(value, list | tuple):
            raise RecipeError(f"{origin}: {where} must be a list (YAML [a, b]), got {value!r}")
        return tuple(_coerce(v, args[0], f"{where}[{i}]", origin) for i, v in enumerate(value))
    if origin_tp is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"{origin}: {where} must be a mapping, got {value!r}")
        kt, vt = args
        return {
            _coerce(k, kt, where, origin): _coerce(v, vt, f"{where}.{k}", origin) for k, v in value.items()
        }
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        # YAML 1.1 (PyYAML) reads 1e-5 (no dot) as a string: a float field takes it by its type
        return float(value)
    if tp is int and isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return int(value)  # dict keys such as mask values arrive as strings from JSON round trips
    if tp is Any or (isinstance(value, tp) and not (tp is int and isinstance(value, bool))):
        return value
    raise RecipeError(f"{origin}: {where} = {value!r} has the wrong type (expected {_name(tp)})")


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _not_allowed(value: Any, allowed: tuple[Any, ...], where: str, origin: str) -> typing.NoReturn:
    hint = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
    fix = f"did you mean {hint[0]!r}? " if hint else ""
    raise RecipeError(
        f"{origin}: {where} = {value!r} is not allowed; {fix}choose one of {', '.join(map(str, allowed))}"
    )


def _check_choices(recipe: Recipe, origin: str) -> None:
    plain = recipe.to_dict()
    for dotted, allowed in _CHOICES.items():
        value: Any = plain
        for part in dotted.split("."):
            value = value[part]
        if value not in allowed:
            _not_allowed(value, allowed, dotted, origin)
    if not _OPERATING_POINT.match(recipe.eval.operating_point):
        raise RecipeError(
            f"{origin}: eval.operating_point = {recipe.eval.operating_point!r}; "
            "use youden, sensitivity:0.95, specificity:0.9 or fixed:0.5"
        )
    split = recipe.data.split
    if not (0 <= split.val < 1 and 0 <= split.test < 1 and split.val + split.test < 1):
        raise RecipeError(
            f"{origin}: data.split val={split.val} test={split.test}: each in [0, 1), sum below 1"
        )
    if isinstance(recipe.train.class_weights, str) and recipe.train.class_weights not in ("none", "balanced"):
        raise RecipeError(f"{origin}: train.class_weights must be none, balanced or a list of numbers")
    if recipe.train.epochs < 1 or recipe.train.batch_size < 1:
        raise RecipeError(f"{origin}: train.epochs and train.batch_size must be at least 1")
    _check_ranges(recipe, origin)
    if recipe.task == "segmentation" and recipe.eval.metric not in ("miou", "dice", "accuracy"):
        raise RecipeError(
            f"{origin}: eval.metric = {recipe.eval.metric!r} for segmentation; use miou or dice"
        )
    rgb, bands = recipe.data.rgb_bands, recipe.data.bands
    if recipe.model.conv1_init == "rgb_bands" and (
        rgb is None or len(rgb) != 3 or (bands is not None and not set(rgb) <= set(bands))
    ):
        raise RecipeError(
            f"{origin}: model.conv1_init = rgb_bands needs data.rgb_bands naming the red, green and blue "
            f"bands among data.bands (e.g. [B04, B03, B02]); got {rgb}"
        )
    steps = recipe.train.milestones
    if not all(0 < m < 1 for m in steps) or list(steps) != sorted(set(steps)):
        raise RecipeError(
            f"{origin}: train.milestones = {list(steps)}: increasing fractions of train.epochs in (0, 1), "
            "e.g. [0.5, 0.75] (MedMNIST: epochs 50 and 75 of 100)"
        )
    if not 0 < recipe.train.gamma <= 1:
        raise RecipeError(f"{origin}: train.gamma = {recipe.train.gamma}: a factor in (0, 1], e.g. 0.1")
    if recipe.data.split.method == "group" and not (
        recipe.data.split.group_pattern or recipe.data.source.group_pattern or recipe.data.source.group_column
    ):
        raise RecipeError(
            f"{origin}: data.split.method = group needs data.source.group_column or data.source.group_pattern"
        )


# (dotted field, lowest, highest, lowest included, what it means): values train would die on or misuse
_RANGES: tuple[tuple[str, float, float, bool, str], ...] = (
    ("train.lr", 0.0, 10.0, False, "a learning rate above 0 (e.g. 1e-3)"),
    ("train.weight_decay", 0.0, 10.0, True, "0 (off) or a small positive number (e.g. 0.05)"),
    ("train.warmup_epochs", 0.0, 1e6, True, "0 (no warm-up) or a positive number of epochs"),
    ("train.momentum", 0.0, 1.0, True, "a momentum in [0, 1]"),
    ("train.label_smoothing", 0.0, 1.0, True, "a smoothing in [0, 1)"),
    ("train.grad_clip", 0.0, 1e12, True, "0 (off) or a positive norm"),
    ("train.backbone_lr_mult", 0.0, 1e6, True, "0 (frozen) or a positive multiplier"),
    ("train.num_workers", 0, 256, True, "auto, 0 (load in the main process) or a positive worker count"),
    ("train.freeze_backbone_epochs", 0, 1e6, True, "0 or a positive number of epochs"),
    ("train.early_stop_patience", 0, 1e6, True, "0 (off) or a positive number of epochs"),
    ("train.checkpoint_every_steps", 0, 1e12, True, "0 (epoch ends only) or a positive step count"),
    ("train.max_steps_per_epoch", 0, 1e12, True, "0 (whole epoch) or a positive step count"),
    ("model.dropout", 0.0, 1.0, True, "a dropout probability in [0, 1)"),
    ("model.fpn_channels", 1, 65536, True, "a positive channel count (e.g. 256)"),
    ("data.image_size", 1, 65536, True, "a positive side in pixels (e.g. 224)"),
    ("data.scale", 0.0, 1e12, False, "a positive raw-to-physical factor (e.g. 1e-4 or 1/255)"),
    ("data.max_pixels", 1, 1e15, True, "a positive number of values (default 450000000)"),
    ("eval.bootstrap", 0, 1_000_000, True, "0 (no intervals) or a resample count (e.g. 1000)"),
    ("eval.gradcam", 0, 256, True, "0 (no gallery) to 256 images"),
)
_OPEN_TOP = ("model.dropout", "train.label_smoothing")  # 1 itself is meaningless there


def _check_ranges(recipe: Recipe, origin: str) -> None:
    """Numbers that are the right type but impossible: NaN, negative, zero where train would divide."""
    plain = recipe.to_dict()
    for dotted, low, high, low_ok, meaning in _RANGES:
        value: Any = plain
        for part in dotted.split("."):
            value = value[part]
        if dotted == "train.num_workers" and value == "auto":
            continue
        number = float(value)
        top_ok = dotted not in _OPEN_TOP
        inside = (number >= low if low_ok else number > low) and (number <= high if top_ok else number < high)
        if math.isnan(number) or not inside:
            raise RecipeError(f"{origin}: {dotted} = {value!r} is out of range; fix: use {meaning}")
    if recipe.data.resize is not None and recipe.data.resize < 1:
        raise RecipeError(f"{origin}: data.resize = {recipe.data.resize!r}; fix: a positive side or null")
    frame = recipe.data.dicom_frame
    if isinstance(frame, str) and frame not in ("first", "middle", "last"):
        raise RecipeError(
            f"{origin}: data.dicom_frame = {frame!r}; fix: a 0-based frame index or first, middle, last"
        )
    if isinstance(frame, int) and frame < 0:
        raise RecipeError(f"{origin}: data.dicom_frame = {frame}; fix: a 0-based frame index (0, 1, ...)")
    weights = recipe.train.class_weights
    if isinstance(weights, list) and any(math.isnan(w) or w < 0 for w in weights):
        raise RecipeError(f"{origin}: train.class_weights = {weights}; fix: non-negative numbers")


def _expand_env(text: str) -> str:
    """``${VAR}`` / ``${VAR:-default}`` from the environment (empty variables count as unset)."""

    def substitute(match: re.Match[str]) -> str:
        value = os.environ.get(match.group(1))
        if value:
            return value
        if match.group(2) is not None:
            return match.group(2)
        raise RecipeError(f"data.root uses ${{{match.group(1)}}} but it is not set; set it or give a default")

    return _ENV.sub(substitute, text)
