"""``evaluate RUN --data DIR``: a new collection, with its own layout, class names and (maybe) no groups.

What the new data may change (``--set data.*``): where files and labels are (``data.source.*``,
``data.classes``), how groups are found. What it may not: the preprocessing (bands, scale, size, window,
normalisation), which the checkpoint fixes. By default the training set's patient-id pattern, group column
and split column are *not* applied to new data; ``--set data.source.group_pattern=...`` brings one back.
Their class names map onto the model's with ``--map their=ours`` (repeatable) or ``--map FILE`` (YAML
mapping or two-column CSV); classes the model knows that the data lacks are reported as absent.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Sequence
from pathlib import Path

import yaml

from resnet_apps.data.records import Record, build_records
from resnet_apps.errors import DatasetError, RecipeError
from resnet_apps.recipe import Recipe, load_recipe

# preprocessing comes from the checkpoint: a new collection cannot change it
FIXED_BY_CHECKPOINT = (
    "bands",
    "rgb_bands",
    "scale",
    "normalize",
    "image_size",
    "resize",
    "dicom_window",
    "grayscale",
)
# the training collection's class list, grouping and split columns: not applied to new data unless set again
TRAINING_ONLY = (
    "data.classes",  # the training folders' names; theirs come from their folders / labels (then --map)
    "data.source.split_column",
    "data.source.group_pattern",
    "data.source.group_column",
    "data.source.group_index",
    "data.split.group_pattern",
)


def new_data_recipe(recipe_path: Path, data: str | Path, overrides: Sequence[str]) -> Recipe:
    """The run's recipe pointed at ``data``, with the user's ``data.*`` / ``eval.*`` overrides.

    Raises:
        RecipeError: an override outside ``data.*`` / ``eval.*``, or one of the preprocessing keys.
    """
    keys = [o.partition("=")[0].strip() for o in overrides]
    for key in keys:
        section, _, rest = key.partition(".")
        if section not in ("data", "eval"):
            raise RecipeError(
                f"evaluate --set {key}: only data.* (where files, labels and groups are) and eval.* can "
                "change for new data; the model and its training are fixed by the run"
            )
        if section == "data" and rest.split(".")[0] in FIXED_BY_CHECKPOINT:
            raise RecipeError(
                f"evaluate --set {key}: preprocessing comes from the checkpoint (bands, scale, size, window "
                "and normalisation as trained); give data that fits it instead"
            )
    defaults = [f"{k}=null" for k in TRAINING_ONLY if k not in keys]
    root = f"data.root={Path(data).resolve().as_posix()}"
    return load_recipe(recipe_path, [*defaults, root, *overrides])


def parse_class_map(items: Sequence[str]) -> dict[str, str]:
    """``["their=ours", "map.yaml", "map.csv"]`` -> ``{their: ours}`` (later items win)."""
    mapping: dict[str, str] = {}
    for item in items:
        if "=" in item and not Path(item).is_file():
            their, _, ours = item.partition("=")
            mapping[their.strip()] = ours.strip()
            continue
        path = Path(item)
        if not path.is_file():
            raise DatasetError(f"--map {item}: neither their=ours nor a file; fix: --map NORMAL=normal")
        if path.suffix.lower() == ".csv":
            with open(path, newline="", encoding="utf-8-sig") as handle:
                rows = [r for r in csv.reader(handle) if r and not r[0].startswith("#")]
            if rows and [c.strip().lower() for c in rows[0][:2]] == ["their", "ours"]:
                rows = rows[1:]
            if any(len(r) < 2 for r in rows):
                raise DatasetError(f"{path}: each line needs two columns: their class, our class")
            mapping.update({r[0].strip(): r[1].strip() for r in rows})
        else:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
            if not isinstance(loaded, dict):
                raise DatasetError(f"{path}: a class map is a YAML mapping 'their: ours'")
            mapping.update({str(k): str(v) for k, v in loaded.items()})
    return mapping


def map_records(
    records: list[Record], their: list[str], ours: list[str], mapping: dict[str, str]
) -> list[Record]:
    """Relabel single-label records from their class indices to ours.

    Raises:
        DatasetError: a class of theirs that is neither one of ours nor mapped onto one.
    """
    target: dict[int, int] = {}
    for k, name in enumerate(their):
        mapped = mapping.get(name, name)
        if mapped not in ours:
            raise DatasetError(
                f"class {name!r} of the new data is not a class of the model {ours}"
                f"{f' (mapped to {mapped!r})' if mapped != name else ''}; fix: --map {name}=<one of "
                f"{', '.join(ours)}>, or leave that folder / those rows out"
            )
        target[k] = ours.index(mapped)
    unused = sorted(set(mapping) - set(their))
    if unused:
        raise DatasetError(f"--map: {unused} are not class names of the new data {their}; fix the spelling")
    return [dataclasses.replace(r, label=target[r.label]) if r.label is not None else r for r in records]


@dataclasses.dataclass(frozen=True)
class IndexedData:
    """A new collection indexed by its caller (e.g. instances retrieved from a PACS), not by ``data.source``.

    Attributes:
        root: the folder ``records`` paths are relative to.
        records: single-label records; ``Record.label`` indexes ``classes``.
        classes: their class names (mapped onto the model's with ``--map``).
        name: the evaluation folder is ``evaluate-<name>-<timestamp>``.
        notes: where the data came from, what was left out (for metrics.json and the report).
    """

    root: Path
    records: list[Record]
    classes: list[str]
    name: str
    notes: list[str] = dataclasses.field(default_factory=list)


def new_data_records(
    recipe: Recipe, classes: list[str], task: str, multilabel: bool, mapping: dict[str, str]
) -> tuple[list[Record], list[str]]:
    """Every record of the new collection with the model's labels, and notes for the report."""
    if task == "segmentation" or multilabel:
        if mapping:
            raise DatasetError("--map relabels single-label classification data; segmentation and "
                               "multi-label data must use the model's class names")  # fmt: skip
        records, _ = build_records(recipe.data.source, recipe.data.root, classes)
        return records, []
    records, their = build_records(recipe.data.source, recipe.data.root, recipe.data.classes)
    return labelled_records(records, their, classes, mapping)


def labelled_records(
    records: list[Record], their: list[str], classes: list[str], mapping: dict[str, str]
) -> tuple[list[Record], list[str]]:
    """Single-label records relabelled from ``their`` classes to the model's ``classes``, and the notes."""
    records = map_records(records, their, classes, mapping)
    notes = []
    if mapping:
        notes.append(
            "Class mapping (theirs -> ours): " + ", ".join(f"{a} -> {b}" for a, b in mapping.items())
        )
    present = sorted({r.label for r in records if r.label is not None})
    absent = [c for k, c in enumerate(classes) if k not in present]
    if absent:
        notes.append(
            f"Classes absent from this data: {', '.join(absent)}. Averaged metrics cover the "
            f"{len(present)} classes present ({', '.join(classes[k] for k in present)}); the absent classes' "
            "per-class rows are empty, and metrics that need every class are undefined."
        )
    if all(r.group is None for r in records):
        notes.append(
            "No group ids (patients / tiles) in this data: confidence intervals resample individual images."
        )
    return records, notes
