"""DICOM and image folders to a CSV of per-class probabilities, resumable, with bad files set aside.

Pixels are read exactly as in training (``data.loading.load_arrays``: the DICOM chain, scale, grey,
resize) and standardised with the checkpoint's statistics. One CSV row per image:
``image_id`` (salted hash of the relative path), ``path`` (relative to the input folder),
``p_<class>`` ..., ``pred`` (at the checkpoint's operating threshold), ``threshold`` (that threshold, or
``argmax``), ``dicom_window`` (center/width and its source, DICOM only) and ``warning`` (a DICOM whose
Modality or BodyPartExamined is outside ``meta["data_seen"]``, what the model was trained on). No
identifying DICOM value is ever written: the only identifiers are the hash and the path the user gave.

Resume: ``predictions.csv`` and ``errors.csv`` are appended batch by batch (flushed); a rerun reads the
ids already in either file and skips them, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import csv
import dataclasses
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch import nn

from resnet_apps.data.loading import load_arrays
from resnet_apps.data.records import Record, hash_id
from resnet_apps.data.seen import outside_seen
from resnet_apps.errors import BandError, ImageReadError, RunDirError
from resnet_apps.io.sniff import is_image_file
from resnet_apps.io.tables import safe_row
from resnet_apps.models.decision import Decision, format_probabilities
from resnet_apps.models.meta import CheckpointMeta

PREDICTIONS_CSV = "predictions.csv"
ERRORS_CSV = "errors.csv"
ERROR_COLUMNS = ["image_id", "path", "reason"]
# after pred: the decision rule, the DICOM window (center/width and source), a DICOM outside what training saw
EXTRA_COLUMNS = ["threshold", "dicom_window", "warning"]


def threshold_text(meta: CheckpointMeta | Mapping[str, Any]) -> str:
    """The rule behind ``pred``: the operating threshold on the positive (or each, "|"-joined) probability,
    or argmax."""
    checked = CheckpointMeta.coerce(meta)
    threshold = checked.operating_threshold
    if isinstance(threshold, tuple):
        return "|".join(f"{t:.4g}" for t in threshold)
    if threshold is not None:
        return f"{threshold:.4g}"
    return "0.5" if checked.model.multilabel or len(checked.classes) == 2 else "argmax"


def window_text(facts: Mapping[str, Any]) -> str:
    """``"1600/3200 (header[0])"``: the DICOM window (center/width) used and where it came from; "" otherwise."""
    window, source = facts.get("window"), facts.get("window_source")
    if window is None:
        return source or ""
    return f"{float(window[0]):.6g}/{float(window[1]):.6g} ({source})"


def image_id(relative: str) -> str:
    """Stable salted hash of a relative path (16 hex); the resume key and the CSV's id."""
    return hash_id("image:" + relative)


def list_images(inputs: Sequence[str | Path]) -> list[tuple[Path, str]]:
    """``(file, relative path)`` of every image under the inputs, recursively, in a stable order.

    Folders give paths relative to themselves (prefixed by the folder's name when several inputs are
    given, so that paths stay unique); single files give their name.
    """
    found: list[tuple[Path, str]] = []
    for item in map(Path, inputs):
        if item.is_dir():
            prefix = f"{item.name}/" if len(inputs) > 1 else ""
            files = sorted(p for p in item.rglob("*") if p.is_file() and is_image_file(p))
            found += [(p, prefix + p.relative_to(item).as_posix()) for p in files]
        elif item.is_file():
            found.append((item, item.name))
        else:
            raise ImageReadError(f"{item}: no such file or folder; fix: check the INPUT path")
    return found


def _done_ids(path: Path) -> set[str]:
    """Ids already in a CSV; a torn last line (killed mid-write) is cut off so the file stays valid."""
    if not path.is_file():
        return set()
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)
    with open(path, newline="", encoding="utf-8") as handle:
        return {row["image_id"] for row in csv.DictReader(handle) if row.get("image_id")}


class _SafeWriter:
    """A ``csv.writer`` whose cells pass through ``io.tables.safe_cell`` (file and class names from data)."""

    def __init__(self, writer: Any) -> None:
        self._writer = writer

    def writerow(self, row: Sequence[Any]) -> None:
        self._writer.writerow(safe_row(row))


def _open_csv(path: Path, columns: list[str]) -> tuple[IO[str], _SafeWriter]:
    """Append to ``path`` (header only when new); an existing file with other columns is refused."""
    exists = path.is_file() and path.stat().st_size > 0
    if exists:
        with open(path, newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), [])
        if header != safe_row(columns):
            raise RunDirError(
                f"{path}: its columns {header} differ from this run's {columns} (another checkpoint?); "
                "fix: pass a new --out folder, or delete the file to start over"
            )
    handle = open(path, "a", newline="", encoding="utf-8")
    writer = _SafeWriter(csv.writer(handle))
    if not exists:
        writer.writerow(columns)
        handle.flush()
    return handle, writer


class ImageLoader:
    """Reads one file into a normalised tensor [C, S, S] the way the training data layer does.

    Args:
        meta: checkpoint metadata (its ``preprocessing``; a plain dict is checked by :class:`CheckpointMeta`).
        frame: multi-frame DICOM frame (index or first / middle / last); None: the checkpoint's
            ``dicom_frame``.
        max_pixels: pixel budget of one read (``io.budget``; None: its default).
    """

    def __init__(
        self,
        meta: CheckpointMeta | Mapping[str, Any],
        frame: int | str | None = None,
        max_pixels: int | None = None,
    ) -> None:
        pre = CheckpointMeta.coerce(meta).require_preprocessing()
        self.pre = dataclasses.replace(
            pre, dicom_frame=frame if frame is not None else pre.dicom_frame, max_pixels=max_pixels
        )
        # bands such as ["gray"] recorded for DICOM do not exist in PNG/JPEG: those are read whole, then matched
        self.all_bands = dataclasses.replace(self.pre, bands=None)

    def __call__(self, path: Path, facts: dict[str, Any] | None = None) -> torch.Tensor:
        """[C, S, S] float32; ``facts`` receives a DICOM's modality, body part and window (see load_arrays)."""
        try:
            arrays = load_arrays(Record(path=path.name), path.parent, self.pre, None, facts)
        except BandError:
            if self.pre.bands is None:
                raise
            # io checks bands against the header before decoding, so this costs one decode, not two
            arrays = load_arrays(Record(path=path.name), path.parent, self.all_bands, None, facts)
        image = self.pre.match_channels(arrays["image"], path).astype(np.float32, copy=True)
        return torch.from_numpy(self.pre.standardise(image, arrays["valid"]))


def _batches(items: list[tuple[Path, str]], size: int) -> Iterator[list[tuple[Path, str]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def predict_folder(
    model: nn.Module,
    meta: CheckpointMeta | Mapping[str, Any],
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    batch_size: int = 16,
    gradcam: bool = False,
    device: str | torch.device = "cpu",
    progress: bool = True,
    frame: int | str | None = None,
    max_pixels: int | None = None,
) -> dict[str, Any]:
    """Classify every image under ``inputs`` into ``out_dir/predictions.csv`` (bad files: ``errors.csv``).

    Args:
        model: classification model from ``load_run`` ([B, C, S, S] -> [B, K] logits).
        meta: its checkpoint metadata (classes, preprocessing, operating_threshold, positive_class);
            a plain dict is checked by :class:`CheckpointMeta`.
        inputs: folders (searched recursively) and/or files: DICOM, PNG, JPEG, TIFF.
        out_dir: output folder; an existing one is resumed.
        batch_size: images per forward pass.
        gradcam: also write ``gradcam/<image_id>.png`` (Grad-CAM of the predicted class).
        device: where the model runs.
        progress: tqdm bar with files/s and ETA.
        frame: multi-frame DICOM frame (``--frame``: index or first / middle / last).
        max_pixels: pixel budget per file (``--max-pixels``); a larger file goes to ``errors.csv``.

    Returns:
        ``{"predicted", "errors", "flagged", "skipped_done", "seconds", "files_per_s", "csv", "errors_csv"}``.
    """
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checked = CheckpointMeta.coerce(meta)
    decision = Decision.from_meta(checked)
    loader = ImageLoader(checked, frame=frame, max_pixels=max_pixels)
    columns = ["image_id", "path"] + [f"p_{c}" for c in decision.columns()] + ["pred", *EXTRA_COLUMNS]
    threshold = threshold_text(checked)
    seen = checked.get("data_seen")  # optional: checkpoints before issue 12 lack it
    csv_path, err_path = out_dir / PREDICTIONS_CSV, out_dir / ERRORS_CSV
    done = _done_ids(csv_path) | _done_ids(err_path)
    todo = [(p, rel) for p, rel in list_images(inputs) if image_id(rel) not in done]
    skipped = len(done)
    device = torch.device(device)
    model = model.to(device).eval()
    counts = {"predicted": 0, "errors": 0, "flagged": 0}
    start = time.perf_counter()
    handle, writer = _open_csv(csv_path, columns)
    err_handle, err_writer = _open_csv(err_path, ERROR_COLUMNS)
    try:
        with tqdm(
            total=len(todo), unit="file", desc="predict", disable=not progress, dynamic_ncols=True
        ) as bar:
            for batch in _batches(todo, batch_size):
                images, kept, notes = [], [], []
                for path, rel in batch:
                    facts: dict[str, Any] = {}
                    try:
                        images.append(loader(path, facts))
                        kept.append(rel)
                        notes.append([window_text(facts), outside_seen(facts, seen)])
                        counts["flagged"] += bool(notes[-1][1])
                    except Exception as error:  # noqa: BLE001 - any unreadable file is recorded, the rest goes on
                        err_writer.writerow([image_id(rel), rel, f"{type(error).__name__}: {error}"])
                        counts["errors"] += 1
                if images:
                    x = torch.stack(images).to(device)
                    with torch.no_grad():
                        prob = decision.probabilities(model(x)).cpu()
                    labels = decision.labels(prob)
                    for k, (rel, label) in enumerate(zip(kept, labels, strict=True)):
                        probs = format_probabilities(prob[k].tolist())
                        writer.writerow([image_id(rel), rel, *probs, label, threshold, *notes[k]])
                    if gradcam:
                        _write_gradcams(model, decision, x, prob, kept, out_dir / "gradcam")
                    counts["predicted"] += len(kept)
                handle.flush()
                err_handle.flush()
                bar.update(len(batch))
    finally:
        handle.close()
        err_handle.close()
    seconds = time.perf_counter() - start
    done_now = counts["predicted"] + counts["errors"]
    return {
        **counts,
        "skipped_done": skipped,
        "seconds": seconds,
        "files_per_s": done_now / seconds if seconds else 0.0,
        "csv": csv_path,
        "errors_csv": err_path,
    }


def _write_gradcams(
    model: nn.Module, decision: Decision, x: torch.Tensor, prob: torch.Tensor, rels: list[str], folder: Path
) -> None:
    """Grad-CAM overlay of the predicted class per image, named by image id (never by path)."""
    from resnet_apps.models.explain import gradcam, save_overlay

    for k, (rel, index) in enumerate(zip(rels, decision.label_indices(prob), strict=True)):
        heat = gradcam(model, x[k], class_idx=decision.target_index(index))
        save_overlay(x[k].cpu(), heat, folder / f"{image_id(rel)}.png")
