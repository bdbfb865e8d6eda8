"""The recipe vocabulary: frozen dataclasses and Literal choices (no torch; loading lives in ``recipe``).

Split from the package module so that each reads in one sitting: this module says what a recipe can hold,
``recipe`` reads YAML into it (strict keys, typed overrides, range checks). Import the names from either.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from resnet_apps.constants import Pooling, Task

# --- the vocabulary -------------------------------------------------------------------------------

# Choices typed as ``Literal``: the loader checks a value against the type's own list (``_coerce``), so the
# allowed values are written once. The other string choices are listed in ``_CHOICES`` below. ``Task`` and
# ``Pooling`` live in constants.py (the models and the checkpoint reader use them too) and are re-exported here.
Precision = Literal["fp32", "bf16", "fp16"]  # fp16 on CUDA only (bf16 autocast on CPU)
Stem = Literal["imagenet", "cifar"]  # cifar: 3x3 stride-1 conv1 and no max-pool (small images, e.g. 28 px)
Schedule = Literal["cosine", "multistep"]
Head = Literal["linear", "residual_mlp"]  # residual_mlp: pre-norm residual MLP blocks before the classifier
# What a run predicts, derived from the task, ``model.multilabel`` and the number of classes
# (``train.setup.task_mode``): binary is 2 classes with one logit; multilabel is K independent sigmoids.
TaskMode = Literal["binary", "multiclass", "multilabel", "segmentation"]
SourceKind = Literal["folder", "csv", "multilabel_csv", "pairs", "npz"]
MaskEncoding = Literal["index", "rgb", "palette"]


@dataclass(frozen=True)
class SourceConfig:
    """How records are found under ``data.root`` (ARCHITECTURE.md 5a): the one definition of ``data.source``.

    A recipe file becomes this dataclass; ``data.config.as_source_config`` builds it from a plain dict too
    (the data layer's tests and callers), so the field list exists only here.

    Attributes beyond section 5a (optional, default off):
        group_index: a second CSV (relative to root) that holds the group column, joined on the image's
            file name, e.g. the COVID lung set's ``metadata.csv`` (``filename`` -> ``patientid``).
        group_index_key: the file-name column of ``group_index``.
        test_dir: a class-per-folder directory (relative to root) whose images replace the source's test split.

    Kind ``npz``: ``index`` is a MedMNIST-style archive (``<split>_images``, ``<split>_labels``; see
    ``data.npz``); labels are class indices into ``data.classes``.
    """

    kind: SourceKind = "folder"
    index: str | None = None  # CSV relative to root
    path_column: str = "filename"
    label_column: str = "label"
    split_column: str | None = None
    group_column: str | None = None
    group_pattern: str | None = None
    labels_column: str | None = None
    label_separator: str = "|"
    no_finding: str = "No Finding"
    image_dir: str | None = None
    mask_column: str | None = None
    band_files: dict[str, str] | None = None
    id_pattern: str | None = None
    mask_encoding: MaskEncoding = "index"
    class_colors: dict[str, str] | str | None = None  # inline {class: colour}, or a CSV path under root
    ignore_colors: tuple[str, ...] = ()
    mask_values: dict[int, int] | None = None
    group_index: str | None = None
    group_index_key: str = "filename"
    # the test split read from root/<test_dir>/<class>/<image> instead of the source's own (e.g. MedMNIST's
    # npz train/val with the original Kermany test images); every other record needs a split
    test_dir: str | None = None


@dataclass(frozen=True)
class SplitConfig:
    """How records are divided into train/val/test; the seed makes it reproducible."""

    method: str = "stratified"  # stratified | group | column | spatial
    val: float = 0.15
    test: float = 0.15
    seed: int = 0
    group_pattern: str | None = None
    keep_test: bool = True  # column splits: keep the source's own test split as test
    on_leak: str = "fail"  # fail | drop_train: drop train images of groups that the kept test split holds


@dataclass(frozen=True)
class DataConfig:
    """Where the images are and how pixels become tensors."""

    root: str = "."
    card: str | None = None
    source: SourceConfig = field(default_factory=SourceConfig)
    bands: list[str | int] | None = None
    rgb_bands: list[str | int] | None = None
    scale: float = 1.0
    normalize: str = "card"  # card | imagenet | none
    image_size: int = 224
    resize: int | None = (
        None  # segmentation: resize image (bilinear) and mask (nearest) to resize x resize first
    )
    dicom_window: str | None = None  # None: header window; "percentile"
    grayscale: bool = False
    split: SplitConfig = field(default_factory=SplitConfig)
    augment: str = "none"  # nadir | chest_xray | none
    on_error: str = "fail"  # fail | skip
    cache: bool = True
    classes: list[str] | None = None
    # refuse files whose header claims more values (H x W x bands [x frames]) than this, before decoding:
    # 4.5e8 = 1.5e8 px x 3 bands, 1.8 GB as float32 (resnet_apps.io.budget has the arithmetic)
    max_pixels: int = 450_000_000
    dicom_frame: int | str | None = None  # multi-frame DICOM: 0-based index, or first | middle | last


@dataclass(frozen=True)
class ModelConfig:
    """The network: a timm ResNet backbone and our head."""

    backbone: str = "resnet50"
    weights: str = "imagenet"
    on_missing_weights: str = "fail"  # fail | scratch
    conv1_init: str = "timm"  # timm | rgb_bands
    multilabel: bool = False
    dropout: float = 0.0
    pooling: Pooling = "avg"
    fpn_channels: int = 256
    head: Head = "linear"
    # imagenet: timm's 7x7 stride-2 conv1 + max-pool (stride 4); cifar: 3x3 stride-1 conv1, no max-pool
    # (stride 1: a 28-px image keeps 28 x 28 maps into layer1, as MedMNIST's ResNet-18 (28) does)
    stem: Stem = "imagenet"


@dataclass(frozen=True)
class TrainConfig:
    """The schedule. Learning rates are per 1 image-batch step of ``batch_size`` images."""

    epochs: int = 10
    batch_size: int = 32
    optimizer: str = "adamw"  # adamw | sgd
    lr: float = 1.0e-3
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.05
    backbone_lr_mult: float = 0.1
    warmup_epochs: float = 1.0
    freeze_backbone_epochs: int = 0
    label_smoothing: float = 0.0
    class_weights: str | list[float] = "none"  # none | balanced | explicit list
    sampler: str = "none"  # none | weighted
    grad_clip: float = 0.0  # 0: off
    precision: Precision = "fp32"
    channels_last: bool = False
    compile: bool = False
    early_stop_patience: int = 0  # 0: off
    seed: int = 0
    deterministic: bool = False
    num_workers: int | Literal["auto"] = (
        "auto"  # auto: 0 from the array cache, min(4, cpus - 1) when decoding
    )
    checkpoint_every_steps: int = 0  # 0: checkpoint only at epoch ends; >0: also every N steps (resume)
    max_steps_per_epoch: int = 0  # 0: whole epoch; >0: cap (smoke runs)
    tensorboard: bool = False
    # cosine: warm-up then cosine to 0 at the last step; multistep: warm-up then lr x gamma at each milestone
    schedule: Schedule = "cosine"
    milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])  # fractions of train.epochs
    gamma: float = 0.1


@dataclass(frozen=True)
class EvalConfig:
    """How the run is judged: the metric that picks the best checkpoint and the operating point."""

    metric: str = "accuracy"  # accuracy | balanced_accuracy | kappa | f1_macro | auroc | miou | dice
    operating_point: str = "youden"  # youden | sensitivity:0.95 | specificity:0.9 | fixed:0.5
    bootstrap: int = 1000
    split: str = "test"
    gradcam: int = 8  # gallery size (right and wrong cases)
    report: bool = True  # render report.html / report.md at the end (metrics.json is always written)


@dataclass(frozen=True)
class AnchorConfig:
    """The published number this recipe aims at, and under which protocol it was measured."""

    metric: str = ""
    value: float | None = None
    source: str = ""
    protocol: str = ""
    note: str = ""
    # further figures of the same source and protocol, shown beside our matching rows: {accuracy: 0.854}
    also: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    """A whole recipe. ``to_dict()`` gives the resolved plain-data form saved with every run."""

    name: str
    task: Task
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    anchor: AnchorConfig = field(default_factory=AnchorConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, dicts, str, numbers): what ``recipe.yaml`` in a run directory holds."""
        return plain_data(dataclasses.asdict(self))

    def recipe_hash(self) -> str:
        """sha256 (16 hex chars) of the resolved recipe, for the report's reproducibility section."""
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_yaml(self) -> str:
        """The resolved recipe as YAML, never with anchors (``load_recipe`` refuses them)."""
        return yaml.dump(self.to_dict(), Dumper=NoAliasDumper, sort_keys=False)


class NoAliasDumper(yaml.SafeDumper):
    """``yaml.SafeDumper`` that writes a repeated object out again instead of as ``&id`` / ``*id``."""

    def ignore_aliases(self, data: Any) -> bool:  # noqa: D102 - see the class docstring
        return True


def plain_data(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: plain_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_data(v) for v in value]
    return value
