"""Segmentation of DICOM instances (predict.masks) and the DICOM SEG built from a class map (predict.dicom_seg)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from dicom_fixtures import make_dicom
from PIL import Image
from pydicom import dcmread
from pydicom.uid import SegmentationStorage
from torch import nn

from resnet_apps.predict.dicom_results import ModelInfo, ResultUids, evidence_header
from resnet_apps.predict.dicom_seg import build_seg, segment_classes
from resnet_apps.predict.folder import image_id
from resnet_apps.predict.masks import model_side, predict_masks

CLASSES = ["background", "right_lung", "left_lung"]
META = {
    "task": "segmentation",
    "classes": CLASSES,
    "model": {"in_chans": 1, "num_classes": 3},
    "preprocessing": {"bands": None, "scale": 1.0, "mean": None, "std": None, "image_size": 16,
                      "resize": 8, "dicom_window": None, "grayscale": True},
}  # fmt: skip


class LeftRight(nn.Module):
    """Logits [B, 3, S, S] that call the left half of the input class 1 and the right half class 2."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(tuple(x.shape))
        b, _, h, w = x.shape
        logits = torch.zeros(b, 3, h, w)
        logits[:, 1, :, : w // 2] = 1.0
        logits[:, 2, :, w // 2 :] = 1.0
        return logits


def test_masks_come_back_at_the_source_size_with_nearest_neighbour(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    make_dicom(folder / "a" / "one.dcm", np.arange(30 * 20, dtype=np.uint16).reshape(30, 20))
    bad = make_dicom(folder / "b" / "bad.dcm", np.zeros((8, 8), dtype=np.uint16))
    header = dcmread(bad)
    header.Rows = 64  # claims more pixels than it holds
    header.save_as(bad, enforce_file_format=True)
    model = LeftRight()
    counts = predict_masks(model, META, folder, tmp_path / "out")
    assert counts == {"predicted": 1, "errors": 1}
    assert model.seen == [(1, 1, 8, 8)]  # the run's resize (8), not its crop size (16)
    mask = np.asarray(Image.open(tmp_path / "out" / "masks" / f"{image_id('a/one.dcm')}.png"))
    expected = np.where(np.arange(20) < 10, 1, 2).astype(np.uint8)[np.newaxis].repeat(30, axis=0)
    assert np.array_equal(mask, expected)  # 8 px halves -> 20 px halves, nearest: no class 0 appears
    with open(tmp_path / "out" / "predictions.csv", newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["path"] == "a/one.dcm" and float(row["f_right_lung"]) == pytest.approx(0.5)
    assert float(row["f_background"]) == 0.0
    errors = (tmp_path / "out" / "errors.csv").read_text()
    assert image_id("b/bad.dcm") in errors and "b/bad.dcm" in errors


def test_model_side_falls_back_to_the_saved_recipe_then_the_crop() -> None:
    pre = {k: v for k, v in META["preprocessing"].items() if k != "resize"}  # type: ignore[union-attr]
    assert model_side({**META, "preprocessing": pre, "recipe": {"data": {"resize": 12}}}) == 12
    assert model_side({**META, "preprocessing": pre}) == 16


def test_seg_has_one_segment_per_foreground_class_and_references_its_source(tmp_path: Path) -> None:
    source = dcmread(make_dicom(tmp_path / "cr.dcm", np.zeros((12, 10), dtype=np.uint16)))
    mask = np.zeros((12, 10), dtype=np.uint8)
    mask[2:5, 1:4] = 2  # only the left lung: one frame
    uids = ResultUids.for_source(source.StudyInstanceUID, source.SOPInstanceUID, "sha@0.5")
    info = ModelInfo("resnet_apps segmentation resnet34", "resnet_apps 0.1.0, checkpoint best", "ab" * 32)
    seg = build_seg(evidence_header(source), mask, CLASSES, info, uids)
    assert seg.SOPClassUID == SegmentationStorage and seg.SegmentationType == "BINARY"
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["right_lung", "left_lung"]
    assert int(seg.NumberOfFrames) == 1
    frame = seg.PerFrameFunctionalGroupsSequence[0]
    assert frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber == 2
    assert np.array_equal(seg.pixel_array.astype(bool), mask == 2)
    referenced = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0]
    assert referenced.ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert (seg.SeriesInstanceUID, seg.SOPInstanceUID) == (uids.seg_series, uids.seg_instance)
    assert seg.StudyInstanceUID == source.StudyInstanceUID and seg.PatientID == source.PatientID
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmName == info.name and algorithm.AlgorithmVersion == info.version
    # no background class: every class is a segment
    assert segment_classes(["cloud", "shadow"]) == [0, 1] and segment_classes(CLASSES) == [1, 2]
