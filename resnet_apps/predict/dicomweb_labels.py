"""Labelled instances from a PACS for ``evaluate RUN --data dicomweb+http(s)://... --labels LABELS.csv``.

LABELS.csv names the class of each instance (``StudyInstanceUID,SOPInstanceUID,label``; the study may
be left empty) or of whole studies (``StudyInstanceUID,,label``); a file may mix both (an instance row
wins over its study's row). The studies evaluated are ``--study`` / ``--query`` ones, else every study
the file names. Each labelled image
instance is retrieved (WADO-RS, one at a time, through :mod:`resnet_apps.predict.pacs`) into a
temporary folder under its hashed name; the result is a list of :class:`~resnet_apps.data.records.Record`
that ``train.evaluate_run`` evaluates exactly as records built from a folder.

Nothing raw leaves memory except the retrieved files themselves (deleted with the folder): record paths
are ``io.hash_identifier`` hashes of the UIDs, groups are the keyed hash of the PatientID (``patient``,
the default; the study when the instance has none) or of the StudyInstanceUID (``study``), and every
message names LABELS.csv lines, never a UID.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from dicomweb_client.api import DICOMwebClient
from tqdm.auto import tqdm

from resnet_apps.data.records import Record
from resnet_apps.errors import DatasetError, DicomWebError, ImageReadError
from resnet_apps.io import hash_identifier
from resnet_apps.predict.pacs import ServerErrors, find_studies, list_instances, retrieve

GroupBy = Literal["patient", "study"]
STUDY_COLUMN, SOP_COLUMN, LABEL_COLUMN = "StudyInstanceUID", "SOPInstanceUID", "label"


@dataclass(frozen=True)
class InstanceLabels:
    """LABELS.csv in memory: class names by SOP Instance UID and by Study Instance UID."""

    by_sop: dict[str, str]
    by_study: dict[str, str]
    studies: list[str]  # every study the file names (instance rows may name theirs), in file order
    unplaced: int = 0  # instance rows without their study: found only in --study / --query studies

    def label(self, study: str, sop: str) -> str | None:
        """The instance's class (its own row first, then its study's), None when unlabelled."""
        return self.by_sop.get(sop) or self.by_study.get(study)


def read_labels(path: str | Path) -> InstanceLabels:
    """Read LABELS.csv (columns ``label`` and ``SOPInstanceUID`` and/or ``StudyInstanceUID``).

    Raises:
        DatasetError: missing file or columns, an empty label, a row naming no instance nor study, or
            one instance / study given two different classes (lines named, UIDs never quoted).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: labels CSV not found; fix: --labels names a CSV with UIDs and a label")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in reader.fieldnames or []]
        rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    if LABEL_COLUMN not in columns or not {STUDY_COLUMN, SOP_COLUMN} & set(columns):
        raise DatasetError(
            f"{path}: a labels CSV needs a {LABEL_COLUMN!r} column and a {SOP_COLUMN!r} and/or "
            f"{STUDY_COLUMN!r} column (DICOM keywords, case as written); it has {columns}"
        )
    by_sop: dict[str, str] = {}
    by_study: dict[str, str] = {}
    studies: dict[str, None] = {}  # ordered set
    unplaced = 0
    for line, row in enumerate(rows, start=2):
        label = row.get(LABEL_COLUMN, "")
        sop, study = row.get(SOP_COLUMN, ""), row.get(STUDY_COLUMN, "")
        if not label:
            raise DatasetError(f"{path}: line {line} has an empty {LABEL_COLUMN!r}; fill it or drop the row")
        if not sop and not study:
            raise DatasetError(f"{path}: line {line} names neither an instance nor a study; fill one UID")
        table, what = (by_sop, "instance") if sop else (by_study, "study")
        key = sop or study
        if table.get(key, label) != label:
            raise DatasetError(
                f"{path}: line {line} gives its {what} the class {label!r}, an earlier line "
                f"{table[key]!r}; keep one"
            )
        table[key] = label
        if study:
            studies[study] = None
        unplaced += int(not study)
    return InstanceLabels(by_sop, by_study, list(studies), unplaced)


@dataclass
class Retrieved:
    """What :func:`retrieve_labelled` put in the folder: the records and what it left out."""

    records: list[Record]
    classes: list[str]  # the labels' class names; ``Record.label`` indexes them
    studies: int = 0
    instances: int = 0  # image instances of the studies
    unlabelled: int = 0
    failed: int = 0  # could not be retrieved (listed in the notes as a count)
    labels_not_found: int = 0  # instance rows of LABELS.csv with no such instance on the server
    seconds: float = 0.0
    per_study: list[float] = field(default_factory=list)

    def notes(self) -> list[str]:
        """Sentences for metrics.json and the report (counts only)."""
        notes = [
            f"Data retrieved from a DICOMweb service: {len(self.records)} labelled image instance(s) of "
            f"{self.studies} study(ies)."
        ]
        if self.unlabelled:
            notes.append(f"{self.unlabelled} image instance(s) without a label in the labels CSV: left out.")
        if self.failed:
            notes.append(f"{self.failed} instance(s) could not be retrieved: left out.")
        if self.labels_not_found:
            notes.append(f"{self.labels_not_found} labelled instance(s) of the labels CSV were not found.")
        return notes


def retrieve_labelled(
    client: DICOMwebClient,
    folder: str | Path,
    labels: InstanceLabels,
    *,
    studies: Sequence[str] = (),
    query: str | None = None,
    group_by: GroupBy = "patient",
    progress: bool = True,
) -> Retrieved:
    """Retrieve every labelled image instance of the studies into ``folder`` (hashed names).

    Args:
        client: from :func:`resnet_apps.predict.pacs.connect`.
        folder: a (temporary) folder; the data root of the records.
        labels: from :func:`read_labels`.
        studies: Study Instance UIDs; with ``query``, QIDO-RS filters. Neither: the studies of ``labels``.
        group_by: the records' group: the keyed hash of the PatientID or of the StudyInstanceUID.
        progress: a tqdm bar of studies.

    Raises:
        DicomWebError: the server failed (after retries); no study to evaluate; nothing labelled found.
    """
    start = time.perf_counter()
    wanted = list(studies)
    if not wanted and not query:
        if labels.unplaced:
            raise DicomWebError(
                f"evaluate: {labels.unplaced} instance row(s) of the labels CSV name no StudyInstanceUID; "
                "fix: fill it, or say which studies to search with --study UID or --query FILTERS"
            )
        wanted = list(labels.studies)
    study_uids = find_studies(client, wanted, query)
    classes = sorted(set(labels.by_sop.values()) | set(labels.by_study.values()))
    result = Retrieved(records=[], classes=classes, studies=len(study_uids))
    seen_sops: set[str] = set()
    for study in tqdm(study_uids, unit="study", desc="retrieve", disable=not progress, dynamic_ncols=True):
        tick = time.perf_counter()
        refs = list_instances(client, study)
        result.instances += len(refs)
        for ref in refs:
            seen_sops.add(ref.sop)
            label = labels.label(ref.study, ref.sop)
            if label is None:
                result.unlabelled += 1
                continue
            try:
                with ServerErrors(client, "WADO-RS retrieve"):  # server failures stop the evaluation
                    header = retrieve(client, ref, Path(folder) / ref.relative)
            except ImageReadError:  # this instance only
                result.failed += 1
                continue
            key = header.get("PatientID") if group_by == "patient" else None
            group = hash_identifier(key) or hash_identifier(ref.study)
            result.records.append(Record(path=ref.relative, label=classes.index(label), group=group))
        result.per_study.append(time.perf_counter() - tick)
    result.labels_not_found = len(set(labels.by_sop) - seen_sops)
    result.seconds = time.perf_counter() - start
    if not result.records:
        raise DicomWebError(
            f"evaluate: none of the {result.instances} image instance(s) of {result.studies} study(ies) "
            "has a label (or could be retrieved); fix: check that the labels CSV names these studies or "
            "instances"
        )
    return result


__all__ = ["GroupBy", "InstanceLabels", "Retrieved", "read_labels", "retrieve_labelled"]
