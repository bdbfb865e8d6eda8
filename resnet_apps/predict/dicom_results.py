"""Classification results as DICOM objects for the PACS: a TID 1500 Comprehensive SR and a Grad-CAM capture.

Built with highdicom (never by hand), from the source instance's header (its patient, study and
equipment modules are copied by highdicom, as the standard requires). Those patient fields go only into the
objects sent back to the PACS: they are never written to a local file or log (PHI rule; local outputs keep
keyed hashes only). Every UID we write is derived
from the source SOP Instance UID and the weights' sha256 (UUID v5 under the ``2.25`` root): the same
model re-run on the same instance yields the same SR UID, so "already stored?" is a QIDO lookup and a
second store can never make a duplicate.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

# private coding scheme for the model's class names (DICOM PS3.16 8.2: "99" prefix = local scheme)
SCHEME = "99RESNETAPPS"
MANUFACTURER = "resnet_apps"
SR_SERIES_DESCRIPTION = "resnet_apps classification SR"
SC_SERIES_DESCRIPTION = "resnet_apps Grad-CAM"
SR_SERIES_NUMBER = 9701
SC_SERIES_NUMBER = 9702
_NO_UNITS = hd.sr.CodedConcept("1", "UCUM", "no units")
# name of the qualitative evaluation that holds the reported class (DCM "Finding" is TID 1501's finding type)
CLASSIFICATION = hd.sr.CodedConcept("classification", SCHEME, "Model classification")
THRESHOLD = hd.sr.CodedConcept("threshold", SCHEME, "Operating threshold")
_UID_NAMESPACE = uuid.UUID("7d3d2f3e-5c1b-4f53-9b0e-2f1f5e9a0c11")  # fixed: derived UIDs stay stable


def derived_uid(*parts: str) -> str:
    """A UID that is a pure function of ``parts``: ``2.25.<UUID v5 as integer>`` (PS3.5 B.2)."""
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, '/'.join(parts)).int}"


@dataclass(frozen=True)
class ModelInfo:
    """What the SR says about the model that produced it.

    Attributes:
        name: e.g. "resnet_apps classification resnet18".
        version: resnet_apps version and checkpoint (e.g. "0.1.0 best").
        weights_sha256: sha256 of the checkpoint's .safetensors file: the exact weights used.
    """

    name: str
    version: str
    weights_sha256: str

    def result_key(self, threshold: float) -> str:
        """What the stored results depend on: the exact weights and the operating threshold.

        A new threshold for the same weights gives new SRs (in a new series) rather than leaving
        results stated at the old threshold marked as done.
        """
        return f"{self.weights_sha256}@{threshold:g}"


@dataclass(frozen=True)
class Finding:
    """One instance's classification at the checkpoint's operating point.

    Attributes:
        label: the reported class (the CSV's ``pred``).
        probabilities: class name -> probability (the CSV's ``p_<class>`` columns).
        probability: the probability the SR reports (binary: the positive class; else: the label's).
        threshold: operating threshold on ``probability`` (binary) or unused (argmax).
        meaning: one sentence saying how the threshold turns the probability into the label.
    """

    label: str
    probabilities: Mapping[str, float]
    probability: float
    threshold: float
    meaning: str


@dataclass(frozen=True)
class ResultUids:
    """The UIDs of what we store for one source instance (all derived, see :func:`derived_uid`)."""

    sr_series: str
    sr_instance: str
    sc_series: str
    sc_instance: str
    seg_series: str
    seg_instance: str

    @classmethod
    def for_source(cls, study_uid: str, sop_uid: str, result_key: str) -> ResultUids:
        """Series per (study, model); instance per (source instance, model); see ``ModelInfo.result_key``."""
        return cls(
            sr_series=derived_uid("sr-series", result_key, study_uid),
            sr_instance=derived_uid("sr", result_key, sop_uid),
            sc_series=derived_uid("sc-series", result_key, study_uid),
            sc_instance=derived_uid("sc", result_key, sop_uid),
            seg_series=derived_uid("seg-series", result_key, study_uid),
            seg_instance=derived_uid("seg", result_key, sop_uid),
        )


def describe_threshold(classes: Sequence[str], positive: str, threshold: float, binary: bool) -> str:
    """The sentence stored beside the threshold, e.g. "p(PNEUMONIA) >= 0.6 is reported as PNEUMONIA"."""
    if binary:
        negative = next(c for c in classes if c != positive)
        return (
            f"p({positive}) >= {threshold:g} is reported as {positive}, below it as {negative}; "
            "the threshold is the run's operating point chosen on its validation split"
        )
    return "the most probable class is reported (no threshold applies to a multi-class model)"


# Patient / study attributes the SR copies from its evidence: type 2 (present, possibly empty) in the
# standard, yet often absent in real files; an absent one is added empty so that highdicom can copy it.
_TYPE2_COPIED = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)


def evidence_header(source: Dataset) -> Dataset:
    """A pixel-free copy of ``source`` with the copied type 2 attributes present (empty when absent)."""
    header = Dataset()
    header.update({elem.tag: elem for elem in source if elem.tag != 0x7FE00010})  # no PixelData
    if hasattr(source, "file_meta"):
        header.file_meta = source.file_meta
    for keyword in _TYPE2_COPIED:
        if keyword not in header:
            setattr(header, keyword, "")
    return header


def _concept(name: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value=name[:16], scheme_designator=SCHEME, meaning=name[:64])


def build_sr(source: Dataset, finding: Finding, model: ModelInfo, uids: ResultUids) -> hd.sr.ComprehensiveSR:
    """A TID 1500 measurement report on ``source``: the finding, its probability, threshold and model.

    Args:
        source: the classified instance's :func:`evidence_header`.
        finding: what the model said.
        model: name, version and weights sha256 (also in the observer device context).
        uids: the derived series / instance UIDs.

    Returns:
        A Comprehensive SR in the source's study, referencing its study, series and SOP instance
        (evidence sequence and the measurement group's source image).
    """
    algorithm = hd.sr.AlgorithmIdentification(
        name=model.name,
        version=model.version,
        parameters=[
            f"operating threshold {finding.threshold:g}: {finding.meaning}",
            f"weights sha256 {model.weights_sha256}",
            *(f"p({c}) = {p:.6f}" for c, p in finding.probabilities.items()),
        ],
    )
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=derived_uid("device", model.weights_sha256),
            name=model.name[:64],
            manufacturer_name=MANUFACTURER,
            model_name=model.version[:64],
        ),
    )
    # the algorithm is named once, on the group (TID 1501), not again on each measurement
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=derived_uid("tracking", model.weights_sha256, uids.sr_instance),
            identifier="image classification",
        ),
        algorithm_id=algorithm,
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)],
        measurements=[
            hd.sr.Measurement(name=codes.DCM.Probability, value=finding.probability, unit=_NO_UNITS),
            hd.sr.Measurement(
                name=THRESHOLD,
                value=finding.threshold,
                unit=_NO_UNITS,
            ),
        ],
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(CLASSIFICATION, _concept(finding.label))],
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=hd.sr.CodedConcept("363679005", "SCT", "Imaging"),
        imaging_measurements=[group],
        # no image library: its CR/DX descriptors need PatientOrientation, which many radiographs lack;
        # the source is referenced by the evidence sequence and the group's source image instead
    )
    sr = hd.sr.ComprehensiveSR(
        evidence=[source],
        content=report[0],
        series_instance_uid=uids.sr_series,
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=uids.sr_instance,
        instance_number=int(getattr(source, "InstanceNumber", None) or 1),
        manufacturer=MANUFACTURER,
        series_description=SR_SERIES_DESCRIPTION,
        is_complete=True,
        is_final=False,  # an algorithm's output, not verified by a physician
    )
    return sr


def build_sc(source: Dataset, overlay: np.ndarray, model: ModelInfo, uids: ResultUids) -> hd.sc.SCImage:
    """A Secondary Capture of the Grad-CAM overlay [H, W, 3] uint8, in a new series of the source's study.

    The overlay is at the model's input size (what the model saw), so it carries no pixel spacing;
    ``SourceImageSequence`` points at the classified instance.
    """
    # the overlay is the source resized (no flip, no rotation): the source's orientation holds for it
    orientation = [str(v) for v in (source.get("PatientOrientation") or [])]
    known = len(orientation) == 2 and all(orientation)
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source,
        pixel_array=np.ascontiguousarray(overlay, dtype=np.uint8),
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=uids.sc_series,
        series_number=SC_SERIES_NUMBER,
        sop_instance_uid=uids.sc_instance,
        instance_number=int(getattr(source, "InstanceNumber", None) or 1),
        manufacturer=MANUFACTURER,
        patient_orientation=(orientation[0], orientation[1]) if known else ("L", "F"),
        series_description=SC_SERIES_DESCRIPTION,
    )
    if not known:
        sc.PatientOrientation = []  # type 2: unknown stays empty rather than a guess (placeholder above)
    reference = Dataset()
    reference.ReferencedSOPClassUID = source.SOPClassUID
    reference.ReferencedSOPInstanceUID = source.SOPInstanceUID
    sc.SourceImageSequence = [reference]
    sc.DerivationDescription = f"Grad-CAM of {model.name} (weights sha256 {model.weights_sha256[:16]})"
    return sc
