"""Segmentation results as a DICOM SEG for the PACS (built with highdicom, never by hand).

One BINARY Segmentation per source instance: one segment per non-background class, labelled with the
class name (coded in the project's private scheme), ``AUTOMATIC``, with the model's name, version and
weights' sha256 as its algorithm identification; it references the source image (highdicom's
ReferencedSeriesSequence / SourceImageSequence), goes into the source study in a new series, and
carries the source's patient and study modules, as the standard requires. Its UIDs are derived
(:class:`~resnet_apps.predict.dicom_results.ResultUids`), so a rerun stores nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset

from resnet_apps.predict.dicom_results import MANUFACTURER, SCHEME, ModelInfo, ResultUids

SEG_SERIES_DESCRIPTION = "resnet_apps segmentation"
SEG_SERIES_NUMBER = 9703
BACKGROUND_NAMES = frozenset({"background", "bg", "none", "_background_"})
# segmented property category for every class: a model class, in the project's private scheme
CATEGORY = hd.sr.CodedConcept("model-class", SCHEME, "Model segmentation class")


def segment_classes(classes: Sequence[str]) -> list[int]:
    """Indices of the classes that become segments: all but class 0 when it is a background class."""
    start = 1 if classes and classes[0].lower() in BACKGROUND_NAMES else 0
    return list(range(start, len(classes)))


def build_seg(
    source: Dataset, mask: np.ndarray, classes: Sequence[str], model: ModelInfo, uids: ResultUids
) -> hd.seg.Segmentation:
    """A BINARY DICOM SEG of ``mask`` on ``source``.

    Args:
        source: the source instance's ``evidence_header`` (Rows, Columns, patient and study modules).
        mask: [Rows, Columns] uint8 class indices (0 = background when ``classes[0]`` is one).
        classes: the model's class names; segment k is labelled ``classes[k]``.
        model: name, version and weights sha256 (the algorithm identification).
        uids: the derived series / instance UIDs.

    Returns:
        The Segmentation (segments without a pixel keep their description and get no frame).
    """
    indices = segment_classes(classes)
    algorithm = hd.AlgorithmIdentificationSequence(
        name=model.name[:64],
        family=hd.sr.CodedConcept("123109", "DCM", "Artificial Intelligence"),
        version=model.version[:64],
        parameters={"weights sha256": model.weights_sha256},
    )
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=classes[k][:64],
            segmented_property_category=CATEGORY,
            segmented_property_type=hd.sr.CodedConcept(classes[k][:16], SCHEME, classes[k][:64]),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
        )
        for number, k in enumerate(indices, start=1)
    ]
    # [1, Rows, Columns, segments] of 0/1: one plane per segment, in segment number order
    planes = np.stack([mask == k for k in indices], axis=-1).astype(np.uint8)[np.newaxis]
    return hd.seg.Segmentation(
        source_images=[source],
        pixel_array=planes,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=uids.seg_series,
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=uids.seg_instance,
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=model.name[:64],
        software_versions=model.version[:64],
        device_serial_number=model.weights_sha256[:16],
        series_description=SEG_SERIES_DESCRIPTION,
    )


__all__ = ["SEG_SERIES_DESCRIPTION", "SEG_SERIES_NUMBER", "build_seg", "segment_classes"]
