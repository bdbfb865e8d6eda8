"""Predict from a PACS over DICOMweb and store the results back as DICOM (``predict RUN dicomweb+http://...``).

QIDO-RS finds the studies (``--study`` UIDs or a ``--query`` such as ``ModalitiesInStudy=CR``), their
image series and instances; WADO-RS retrieves them one instance at a time, in the stored transfer
syntax, into a temporary folder that holds one batch at most (never the whole study in memory); the
batch goes through the folder code path (``predict_folder``: the same ``io.read_dicom`` chain, CSVs,
resume, ``errors.csv``), and is deleted. With ``store=True`` each classified instance gets a TID 1500
Comprehensive SR (and, with Grad-CAM, a Secondary Capture), stored with STOW-RS into the source study.

Local files keep no identifier: a CSV ``path`` is ``<hash(study)>/<hash(series)>/<hash(sop)>.dcm``
(``io.hash_identifier``), never a UID nor a patient field. Resume: the SR UID is derived from the
source SOP Instance UID and the weights' sha256, so one QIDO per study tells which instances are
done; without ``store``, the CSVs tell. The protocol (auth, retries, typed errors) is in
:mod:`resnet_apps.predict.pacs`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset
from torch import nn
from tqdm.auto import tqdm

from resnet_apps.errors import DicomWebError, ImageReadError
from resnet_apps.models.decision import Decision
from resnet_apps.predict.dicom_results import (
    Finding,
    ModelInfo,
    ResultUids,
    build_sc,
    build_sr,
    describe_threshold,
)
from resnet_apps.predict.dicom_seg import build_seg
from resnet_apps.predict.folder import ERROR_COLUMNS, ERRORS_CSV, PREDICTIONS_CSV, predict_folder
from resnet_apps.predict.masks import MASKS_DIR, predict_masks
from resnet_apps.predict.pacs import (
    InstanceRef,
    ServerErrors,
    find_studies,
    list_instances,
    retrieve,
    store,
    stored_instances,
)


@dataclass
class Timings:
    """Wall-clock seconds per stage, summed over the run, and per study."""

    query: float = 0.0
    retrieve: float = 0.0
    predict: float = 0.0
    store: float = 0.0
    per_study: list[float] = field(default_factory=list)


def _rows_after(path: Path, offset: int) -> dict[str, dict[str, str]]:
    """Rows appended to a CSV after byte ``offset`` (its header read from the top), by image id."""
    if not path.is_file():
        return {}
    with open(path, "rb") as handle:
        first = handle.readline()
        handle.seek(max(offset, len(first)))
        body = handle.read().decode("utf-8")
    header = next(csv.reader([first.decode("utf-8")]), [])
    return {row["image_id"]: row for row in csv.DictReader(io.StringIO(body, newline=""), fieldnames=header)}


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0


def _append_error(out_dir: Path, ref: InstanceRef, reason: str) -> None:
    """A retrieve failure into errors.csv (same columns as the folder path writes)."""
    path = out_dir / ERRORS_CSV
    new = _size(path) == 0
    with open(path, "a", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(ERROR_COLUMNS)
        writer.writerow([ref.image_id, ref.relative, reason])


def finding_from_row(row: Mapping[str, str], decision: Decision) -> Finding:
    """A predictions.csv row -> the Finding the SR states."""
    probabilities = {c: float(row[f"p_{c}"]) for c in decision.columns()}
    positive = decision.classes[decision.positive_index]
    binary = decision.binary or decision.num_outputs == 1
    label = row["pred"]
    return Finding(
        label=label,
        probabilities=probabilities,
        probability=probabilities[positive]
        if binary
        else probabilities.get(label, max(probabilities.values())),
        threshold=decision.threshold,
        meaning=describe_threshold(decision.classes, positive, decision.threshold, binary),
    )


def _batches(items: Sequence[InstanceRef], size: int) -> Iterator[Sequence[InstanceRef]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class _Run:
    """What one ``predict_dicomweb`` call carries from batch to batch."""

    client: DICOMwebClient
    model: nn.Module
    meta: Mapping[str, Any]
    out: Path
    model_info: ModelInfo
    store_results: bool
    gradcam: bool
    batch_size: int
    device: str
    decision: Decision
    segmentation: bool  # a class map per instance, stored as a DICOM SEG (else a finding, as an SR)
    known: dict[str, dict[str, str]]  # image id -> predictions.csv row
    failed: set[str]  # image ids in errors.csv
    times: Timings = field(default_factory=Timings)
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("instances", "predicted", "errors", "skipped_done", "stored_sr", "stored_sc", "stored_seg"), 0
        )
    )

    def todo(self, study: str) -> list[InstanceRef]:
        """The study's instances without a stored SR / SEG (``store``) or a CSV row, and not failed before."""
        tick = time.perf_counter()
        refs = list_instances(self.client, study)
        key = self.model_info.result_key(self.decision.threshold)
        stored: set[str] = set()
        if self.store_results:
            series = ResultUids.for_source(study, "", key)
            stored = stored_instances(
                self.client, study, series.seg_series if self.segmentation else series.sr_series
            )
        self.times.query += time.perf_counter() - tick
        self.counts["instances"] += len(refs)
        todo = []
        for ref in refs:
            if self.store_results:
                uids = ResultUids.for_source(study, ref.sop, key)
                finished = (uids.seg_instance if self.segmentation else uids.sr_instance) in stored
            else:
                finished = ref.image_id in self.known
            if finished or ref.image_id in self.failed:
                self.counts["skipped_done"] += 1
            else:
                todo.append(ref)
        return todo

    def batch(self, batch: Sequence[InstanceRef]) -> None:
        """Retrieve to a temporary folder, predict through ``predict_folder``, store the results."""
        pred_csv, err_csv = self.out / PREDICTIONS_CSV, self.out / ERRORS_CSV
        with tempfile.TemporaryDirectory(prefix="resnet_apps_dicomweb_") as tmp:
            headers: dict[str, Dataset] = {}
            tick = time.perf_counter()
            for ref in batch:
                try:
                    with ServerErrors(self.client, "WADO-RS retrieve"):  # server failures stop the run
                        headers[ref.image_id] = retrieve(self.client, ref, Path(tmp) / ref.relative)
                except ImageReadError as error:  # this instance only: listed, the run goes on
                    _append_error(self.out, ref, f"{type(error).__name__}: {error}")
                    self.failed.add(ref.image_id)
                    self.counts["errors"] += 1
            self.times.retrieve += time.perf_counter() - tick
            tick = time.perf_counter()
            offsets = _size(pred_csv), _size(err_csv)
            if any(image_id not in self.known for image_id in headers) and self.segmentation:
                result = predict_masks(self.model, self.meta, tmp, self.out, device=self.device)
                self.counts["predicted"] += result["predicted"]
                self.counts["errors"] += result["errors"]
            elif any(image_id not in self.known for image_id in headers):
                result = predict_folder(
                    self.model,
                    self.meta,
                    [tmp],
                    self.out,
                    batch_size=self.batch_size,
                    gradcam=self.gradcam,
                    device=self.device,
                    progress=False,
                )
                self.counts["predicted"] += result["predicted"]
                self.counts["errors"] += result["errors"]
            self.known.update(_rows_after(pred_csv, offsets[0]))
            self.failed.update(_rows_after(err_csv, offsets[1]))
            self.times.predict += time.perf_counter() - tick
        if self.store_results:
            tick = time.perf_counter()
            gradcam_dir = self.out / "gradcam" if self.gradcam else None
            for ref in batch:
                if self.segmentation and ref.image_id in headers and ref.image_id in self.known:
                    _store_seg(self.client, ref, headers[ref.image_id], self.out, self.meta, self.model_info)
                    self.counts["stored_seg"] += 1
                elif ref.image_id in headers and ref.image_id in self.known:
                    row = self.known[ref.image_id]
                    with_sc = _store_one(
                        self.client,
                        ref,
                        headers[ref.image_id],
                        row,
                        self.decision,
                        self.model_info,
                        gradcam_dir,
                    )
                    self.counts["stored_sr"] += 1
                    self.counts["stored_sc"] += int(with_sc)
            self.times.store += time.perf_counter() - tick


def predict_dicomweb(
    model: nn.Module,
    meta: Mapping[str, Any],
    client: DICOMwebClient,
    out_dir: str | Path,
    *,
    model_info: ModelInfo,
    studies: Sequence[str] = (),
    query: str | None = None,
    store_results: bool = False,
    gradcam: bool = False,
    batch_size: int = 8,
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Classify (or segment) the studies' image instances into ``out_dir`` and, optionally, store results back.

    A segmentation run writes ``masks/<image_id>.png`` and per-class pixel fractions
    (:func:`~resnet_apps.predict.masks.predict_masks`) and stores one DICOM SEG per instance.

    Args:
        model: classification ([B, C, S, S] -> [B, K]) or segmentation ([B, K, S, S]) model, from ``load_run``.
        meta: its checkpoint metadata.
        client: from :func:`resnet_apps.predict.pacs.connect`.
        out_dir: output folder (predictions.csv, errors.csv, gradcam/); an existing one resumes.
        model_info: name, version, weights sha256, stated in every SR.
        studies: Study Instance UIDs.
        query: QIDO-RS study filters, ``"ModalitiesInStudy=CR&StudyDate=20260101-"``.
        store_results: STOW-RS one SR per classified instance (+ one SC when ``gradcam``).
        gradcam: Grad-CAM overlays (``out_dir/gradcam``; stored as Secondary Captures with ``store``).
        batch_size: instances retrieved to disk and predicted together.
        device: torch device.
        progress: a tqdm bar of instances (studies are counted as they are listed).

    Returns:
        Counts (studies, instances, predicted, errors, skipped_done, stored_sr, stored_sc, stored_seg) and timings
        in seconds (total, per stage, per study and per instance).
    """
    decision = Decision.from_meta(meta)
    segmentation = meta.get("task", "classification") == "segmentation"
    if segmentation and gradcam:
        raise DicomWebError("--gradcam explains classification runs; drop it for a segmentation run")
    if store_results and decision.multilabel:
        raise DicomWebError(
            "--store writes one finding per instance; a multi-label model is not supported yet"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run = _Run(
        client=client,
        model=model,
        meta=meta,
        out=out,
        model_info=model_info,
        store_results=store_results,
        gradcam=gradcam,
        batch_size=batch_size,
        device=device,
        decision=decision,
        segmentation=segmentation,
        known=_rows_after(out / PREDICTIONS_CSV, 0),
        failed=set(_rows_after(out / ERRORS_CSV, 0)),
    )
    start = time.perf_counter()
    study_uids = find_studies(client, studies, query)
    run.times.query += time.perf_counter() - start
    with tqdm(total=0, unit="instance", desc="dicomweb", disable=not progress, dynamic_ncols=True) as bar:
        for study in study_uids:
            study_start = time.perf_counter()
            todo = run.todo(study)
            bar.total += len(todo)
            bar.refresh()
            for batch in _batches(todo, batch_size):
                run.batch(batch)
                bar.update(len(batch))
            run.times.per_study.append(time.perf_counter() - study_start)
    seconds = time.perf_counter() - start
    handled = max(run.counts["instances"] - run.counts["skipped_done"], 1)
    return {
        "source": client.base_url,
        "studies": len(study_uids),
        **run.counts,
        "seconds": seconds,
        "seconds_query": run.times.query,
        "seconds_retrieve": run.times.retrieve,
        "seconds_predict": run.times.predict,
        "seconds_store": run.times.store,
        "seconds_per_study": seconds / max(len(study_uids), 1),
        "seconds_per_instance": seconds / handled,
        "csv": out / PREDICTIONS_CSV,
        "errors_csv": out / ERRORS_CSV,
    }


@contextlib.contextmanager
def _no_highdicom_warnings() -> Iterator[None]:
    """highdicom's person-name checks quote the patient's name in their warnings: keep them out of logs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


def _store_seg(
    client: DICOMwebClient,
    ref: InstanceRef,
    header: Dataset,
    out: Path,
    meta: Mapping[str, Any],
    model_info: ModelInfo,
) -> None:
    """STOW one DICOM SEG of the instance's class map (``out/masks/<image_id>.png``)."""
    from PIL import Image

    uids = ResultUids.for_source(
        ref.study, ref.sop, model_info.result_key(Decision.from_meta(meta).threshold)
    )
    mask = np.asarray(Image.open(out / MASKS_DIR / f"{ref.image_id}.png"))
    with _no_highdicom_warnings():
        seg = build_seg(header, mask, [str(c) for c in meta.get("classes") or []], model_info, uids)
    store(client, [seg], ref.study)


def _store_one(
    client: DICOMwebClient,
    ref: InstanceRef,
    header: Dataset,
    row: Mapping[str, str],
    decision: Decision,
    model_info: ModelInfo,
    gradcam_dir: Path | None,
) -> bool:
    """STOW the SC (when its overlay exists) and then the SR: the SR last, as the "done" mark."""
    uids = ResultUids.for_source(ref.study, ref.sop, model_info.result_key(decision.threshold))
    with _no_highdicom_warnings():
        return _build_and_store(client, ref, header, row, decision, model_info, gradcam_dir, uids)


def _build_and_store(
    client: DICOMwebClient,
    ref: InstanceRef,
    header: Dataset,
    row: Mapping[str, str],
    decision: Decision,
    model_info: ModelInfo,
    gradcam_dir: Path | None,
    uids: ResultUids,
) -> bool:
    stored_sc = False
    overlay_path = None if gradcam_dir is None else gradcam_dir / f"{ref.image_id}.png"
    if overlay_path is not None and overlay_path.is_file():
        from PIL import Image

        overlay = np.asarray(Image.open(overlay_path).convert("RGB"))
        store(client, [build_sc(header, overlay, model_info, uids)], ref.study)
        stored_sc = True
    store(client, [build_sr(header, finding_from_row(row, decision), model_info, uids)], ref.study)
    return stored_sc


__all__ = ["Timings", "finding_from_row", "predict_dicomweb"]
