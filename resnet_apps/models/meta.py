"""The one reader of checkpoint metadata (``<stem>.json``, docs/ARCHITECTURE.md section 2): :class:`CheckpointMeta`.

``load_run``, ``predict`` (folders and scenes), ``evaluate``, ``export`` and Grad-CAM read the JSON through
:meth:`CheckpointMeta.read` / :meth:`CheckpointMeta.from_dict`, which check every field they use: types,
the class list against the model's outputs, one threshold per class for multi-label models. Bad metadata
is a :class:`~resnet_apps.errors.CheckpointError` naming the file, the field and the fix, never a
traceback or a misaligned ``predictions.csv``. No torch here.
"""

from __future__ import annotations

import json
import math
import os
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnet_apps.constants import POOLINGS, TASKS, Pooling, Task
from resnet_apps.data.preprocessing import Preprocessing
from resnet_apps.errors import CheckpointError
from resnet_apps.recipe import Head, TaskMode

FORMAT_VERSION = 1
HEADS: tuple[Head, ...] = typing.get_args(Head)
# a checkpoint JSON is a few kB; anything this large is not one (and would be read whole into memory)
MAX_JSON_BYTES = 64 << 20


@dataclass(frozen=True)
class ModelSpec:
    """``meta["model"]``: what ``build_model`` rebuilds the network from.

    Attributes:
        backbone: timm name ("" when the metadata was written for a model built elsewhere; ``load_run``
            needs it).
        in_chans: input channels C.
        num_classes: K outputs (1: one binary logit).
        multilabel: K independent sigmoid outputs.
        dropout: before the classifier.
        pooling: classification pooling.
        fpn_channels: FPN width (segmentation).
        head: classification head before the classifier ("linear" for checkpoints written before the
            option existed).
    """

    backbone: str = ""
    in_chans: int = 3
    num_classes: int = 2
    multilabel: bool = False
    dropout: float = 0.0
    pooling: Pooling = "avg"
    fpn_channels: int = 256
    head: Head = "linear"
    stem: str = "imagenet"  # checkpoints from before the option: timm's own stem

    def build_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``build_model`` besides task, backbone and weights."""
        return {
            "in_chans": self.in_chans,
            "num_classes": self.num_classes,
            "multilabel": self.multilabel,
            "dropout": self.dropout,
            "pooling": self.pooling,
            "fpn_channels": self.fpn_channels,
            "head": self.head,
            "stem": self.stem,
        }


@dataclass(frozen=True, eq=False)
class CheckpointMeta(Mapping[str, Any]):
    """Checked checkpoint metadata.

    The typed attributes are what code reads; the object is also a read-only mapping over the stored JSON
    (``meta["metrics"]``, ``meta["recipe"]``, ``meta["versions"]``: informational fields, and callers that
    used the plain dict ``load_run`` returned before).

    Attributes:
        source: the file it came from (named in every error).
        task: "classification" or "segmentation".
        model: the network's shape.
        classes: class names, one per output (one binary logit: [negative, positive]); ``class0`` ... when
            the file names none.
        preprocessing: bands, scale, mean, std, size; None when the file has none (see
            :meth:`require_preprocessing`).
        operating_threshold: binary: one float; multi-label: one float per class; else None.
        positive_class: the positive class of a binary model (default: the last class).
        epoch: the epoch the weights come from, if recorded.
        weights_source: where the backbone's starting weights came from.
        imagenet_weights_used: whether they were ImageNet's.
        raw: the JSON as stored.
    """

    source: str
    task: Task
    model: ModelSpec
    classes: tuple[str, ...]
    preprocessing: Preprocessing | None
    operating_threshold: float | tuple[float, ...] | None
    positive_class: str | None
    epoch: int | None
    weights_source: str
    imagenet_weights_used: bool
    raw: Mapping[str, Any] = field(repr=False)

    # --- reading -------------------------------------------------------------------------------------

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> CheckpointMeta:
        """Read and check ``<stem>.json``.

        Raises:
            CheckpointError: missing, empty, oversized or invalid JSON, or invalid fields (see :meth:`from_dict`).
        """
        path = Path(path)
        fix = (
            "restore the file from the run, or retrain (the .json is written last, so a complete run has one)"
        )
        try:
            size = path.stat().st_size
            if size > MAX_JSON_BYTES:
                raise CheckpointError(f"{path}: {size} bytes is not checkpoint metadata (a few kB); {fix}")
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise CheckpointError(
                f"{path}: cannot read checkpoint metadata ({error.strerror or error}); {fix}"
            ) from None
        except UnicodeDecodeError:
            raise CheckpointError(f"{path}: checkpoint metadata is not UTF-8 text; {fix}") from None
        if not text.strip():
            raise CheckpointError(f"{path}: checkpoint metadata is empty; {fix}")
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as error:
            raise CheckpointError(
                f"{path}: checkpoint metadata is not valid JSON (line {error.lineno}, column {error.colno}: "
                f"{error.msg}); {fix}"
            ) from None
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def coerce(
        cls, meta: CheckpointMeta | Mapping[str, Any], source: str = "checkpoint metadata"
    ) -> CheckpointMeta:
        """``meta`` itself when already checked, else :meth:`from_dict` of the plain dict.

        A dict built in code (a caller's own model, tests) may leave out ``task`` (classification) and
        ``model`` (one output per class); every field it gives is checked as in a file.
        """
        if isinstance(meta, CheckpointMeta):
            return meta
        return cls.from_dict(meta, source=source, strict=False)

    @classmethod
    def from_dict(cls, raw: Any, source: str = "checkpoint metadata", strict: bool = True) -> CheckpointMeta:
        """Check plain metadata (a loaded JSON) and return it typed.

        Required: ``task`` and a ``model`` mapping (``strict=False``: classification and one output per
        class when absent). Optional fields take the defaults ``save_checkpoint`` writes. ``classes`` must
        have one name per output (two for one binary logit); a multi-label ``operating_threshold`` is one
        number for all classes or a list with one per class.

        Raises:
            CheckpointError: naming ``source``, the field and the fix.
        """
        if not isinstance(raw, Mapping):
            raise CheckpointError(
                f"{source}: checkpoint metadata must be a JSON object, not {type(raw).__name__}; "
                "it was not written by save_checkpoint"
            )

        def bad(
            name: str, expected: str, fix: str = "fix that field, or re-save the checkpoint"
        ) -> CheckpointError:
            value = _get(raw, name)
            return CheckpointError(f"{source}: field '{name}' = {_short(value)} is not {expected}; {fix}")

        if not strict and ("task" not in raw or "model" not in raw):
            names = raw.get("classes")
            outputs = {"num_classes": len(names)} if isinstance(names, list) and names else {}
            raw = {"task": "classification", "model": outputs, **raw}
        version = raw.get("format_version", FORMAT_VERSION)
        if not _is_int(version) or version < 1:
            raise bad("format_version", "a positive integer")
        if version > FORMAT_VERSION:
            raise CheckpointError(
                f"{source}: format_version {version} is newer than this resnet_apps reads ({FORMAT_VERSION}); "
                "upgrade resnet_apps"
            )
        if "task" not in raw or not isinstance(raw.get("model"), Mapping):
            raise CheckpointError(
                f"{source} lacks 'task' or 'model' (a mapping with backbone, in_chans, num_classes); it was not "
                "written by save_checkpoint: re-save it with save_checkpoint(stem, model, meta)"
            )
        task = raw["task"]
        if task not in TASKS:
            raise bad("task", f"one of {list(TASKS)}")
        model = _model_spec(raw, bad)
        classes = _classes(raw, task, model, bad)
        pre_raw = raw.get("preprocessing")
        preprocessing = None if pre_raw is None else Preprocessing.from_dict(pre_raw, model.in_chans, source)
        threshold = _threshold(raw, model, bad)
        positive = raw.get("positive_class")
        if positive is not None and positive not in classes:
            raise bad("positive_class", f"one of the classes {list(classes)}")
        epoch = raw.get("epoch")
        if epoch is not None and not _is_int(epoch):
            raise bad("epoch", "an integer or null")
        weights_source = raw.get("weights_source", "none")
        imagenet = raw.get("imagenet_weights_used", False)
        if not isinstance(imagenet, bool):
            raise bad("imagenet_weights_used", "true or false")
        return cls(
            source=source,
            task=task,
            model=model,
            classes=classes,
            preprocessing=preprocessing,
            operating_threshold=threshold,
            positive_class=positive,
            epoch=epoch,
            weights_source=str(weights_source),
            imagenet_weights_used=imagenet,
            raw=raw,
        )

    # --- what consumers need --------------------------------------------------------------------------

    def require_preprocessing(self) -> Preprocessing:
        """The preprocessing block, which prediction cannot do without.

        Raises:
            CheckpointError: the file has none.
        """
        if self.preprocessing is None:
            raise CheckpointError(
                f"{self.source}: field 'preprocessing' is missing; re-save the checkpoint with "
                "save_checkpoint(...) so that bands, scale, mean and std travel with the weights"
            )
        return self.preprocessing

    @property
    def mode(self) -> TaskMode:
        """How outputs become labels and metrics: binary (one logit), multiclass, multilabel, segmentation."""
        if self.task == "segmentation":
            return "segmentation"
        if self.model.multilabel:
            return "multilabel"
        return "binary" if self.model.num_classes == 1 else "multiclass"

    def thresholds(self) -> tuple[float, ...]:
        """One threshold per output for multi-label models, else ``(binary threshold,)``; 0.5 when unset."""
        t = self.operating_threshold
        if self.model.multilabel:
            if isinstance(t, tuple):
                return t
            return (0.5 if t is None else t,) * self.model.num_classes
        if isinstance(t, tuple):  # from_dict refuses this; kept total for hand-built objects
            raise CheckpointError(f"{self.source}: a list operating_threshold needs a multi-label model")
        return (0.5 if t is None else t,)

    # --- read-only mapping over the stored JSON ------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _get(raw: Mapping[str, Any], dotted: str) -> Any:
    value: Any = raw
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _model_spec(raw: Mapping[str, Any], bad: Any) -> ModelSpec:
    block = raw["model"]
    pre = raw.get("preprocessing")
    mean = pre.get("mean") if isinstance(pre, Mapping) else None
    default_chans = len(mean) if isinstance(mean, list) and mean else 3
    backbone = block.get("backbone", "")
    if not isinstance(backbone, str):
        raise bad("model.backbone", "a timm model name")
    ints = {}
    for name, default in (("in_chans", default_chans), ("num_classes", 2), ("fpn_channels", 256)):
        value = block.get(name, default)
        value = default if value is None else value
        if not _is_int(value) or value < 1:
            raise bad(f"model.{name}", "a positive integer")
        ints[name] = value
    multilabel = block.get("multilabel", False)
    multilabel = False if multilabel is None else multilabel
    if not isinstance(multilabel, bool):
        raise bad("model.multilabel", "true or false")
    dropout = block.get("dropout", 0.0)
    dropout = 0.0 if dropout is None else dropout
    if not _is_number(dropout) or not 0 <= dropout < 1:
        raise bad("model.dropout", "a number in [0, 1)")
    pooling = block.get("pooling", "avg")
    pooling = "avg" if pooling is None else pooling
    if pooling not in POOLINGS:
        raise bad("model.pooling", f"one of {list(POOLINGS)}")
    head = block.get("head", "linear")
    head = "linear" if head is None else head
    if head not in HEADS:
        raise bad("model.head", f"one of {list(HEADS)}")
    stem = block.get("stem") or "imagenet"
    if stem not in ("imagenet", "cifar"):
        raise bad("model.stem", "imagenet or cifar")
    return ModelSpec(
        backbone=backbone,
        in_chans=ints["in_chans"],
        num_classes=ints["num_classes"],
        multilabel=multilabel,
        dropout=float(dropout),
        pooling=pooling,
        fpn_channels=ints["fpn_channels"],
        head=head,
        stem=stem,
    )


def _classes(raw: Mapping[str, Any], task: Task, model: ModelSpec, bad: Any) -> tuple[str, ...]:
    """Class names, checked against the outputs: K names, or 2 for one binary logit."""
    expected = (
        2
        if task == "classification" and model.num_classes == 1 and not model.multilabel
        else model.num_classes
    )
    names = raw.get("classes")
    if names is None:
        return tuple(f"class{k}" for k in range(expected))
    if not isinstance(names, list) or not all(isinstance(c, str) for c in names):
        raise bad("classes", "a list of class names")
    if len(set(names)) != len(names):
        raise bad("classes", "a list of distinct names", "remove the repeated name")
    if len(names) != expected:
        outputs = "one binary logit" if model.num_classes == 1 else f"{model.num_classes} outputs"
        raise bad(
            "classes",
            f"{expected} names: the model has {outputs} (model.num_classes) but the file lists {len(names)}",
            "the class list must match the weights; restore it from the run's metrics.json or recipe",
        )
    return tuple(names)


def _threshold(raw: Mapping[str, Any], model: ModelSpec, bad: Any) -> float | tuple[float, ...] | None:
    value = raw.get("operating_threshold")
    if value is None:
        return None
    if _is_number(value):
        return float(value)
    if isinstance(value, list) and model.multilabel:
        if len(value) != model.num_classes or not all(_is_number(v) for v in value):
            raise bad("operating_threshold", f"a list of {model.num_classes} numbers, one per class")
        return tuple(float(v) for v in value)
    if isinstance(value, list):
        raise bad("operating_threshold", "one number (a list of thresholds needs model.multilabel: true)")
    raise bad("operating_threshold", "a number, a list of numbers (multi-label) or null")
