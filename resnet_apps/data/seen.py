"""What kind of DICOM a model was trained on: the sets of Modality and BodyPartExamined (no torch).

Recorded in the checkpoint as ``meta["data_seen"] = {"modality": [...], "body_part": [...]}`` so that
``predict`` can flag a hip film or an MR slice given to a chest X-ray model instead of scoring it silently.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from resnet_apps.data.records import Record
from resnet_apps.errors import ResnetAppsError
from resnet_apps.io.dicom import read_dicom_header
from resnet_apps.io.sniff import is_dicom_file

MAX_HEADERS = 2000  # an evenly spaced sample bounds the cost (a header read is ~2 ms) on big collections


def dicom_seen(records: Sequence[Record], root: str | Path) -> dict[str, list[str]]:
    """Sorted upper-case Modality and BodyPartExamined values over the DICOM files among ``records``.

    Both lists are empty when no record is DICOM (then prediction cannot judge, and says nothing).
    """
    step = max(1, len(records) // MAX_HEADERS)
    modality: set[str] = set()
    body_part: set[str] = set()
    for record in records[::step]:
        path = Path(root) / record.path
        if record.band_paths or not is_dicom_file(path):
            continue
        try:
            header = read_dicom_header(path)
        except ResnetAppsError:
            continue  # unreadable files are reported by the training data pass, not here
        if header.modality:
            modality.add(header.modality.strip().upper())
        if header.body_part:
            body_part.add(header.body_part.strip().upper())
    return {"modality": sorted(modality), "body_part": sorted(body_part)}


def outside_seen(facts: Mapping[str, Any], seen: Mapping[str, Any] | None) -> str:
    """A warning when a file's Modality or BodyPartExamined is not among those seen in training, else ""."""
    if not seen:
        return ""
    notes = []
    for key, tag in (("modality", "Modality"), ("body_part", "BodyPartExamined")):
        known = [str(v).upper() for v in seen.get(key) or []]
        value = facts.get(key)
        if known and value and str(value).strip().upper() not in known:
            notes.append(f"{tag} {str(value).strip()} not seen in training ({', '.join(known)})")
    return "; ".join(notes)
