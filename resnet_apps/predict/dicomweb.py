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
done; without ``store``, the CSVs tell. Auth comes from the environment (``RESNET_APPS_DICOMWEB_TOKEN``
for a bearer token, or ``RESNET_APPS_DICOMWEB_USER`` / ``RESNET_APPS_DICOMWEB_PASSWORD``), else from a
netrc file (``~/.netrc`` or ``$NETRC``, read by requests), never from the command line; TLS certificates
are verified (``REQUESTS_CA_BUNDLE`` names a private CA).
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import numpy as np
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from requests.adapters import HTTPAdapter
from torch import nn
from urllib3.util.retry import Retry

from resnet_apps.errors import DicomWebError, ImageReadError
from resnet_apps.io import hash_identifier
from resnet_apps.models.decision import Decision
from resnet_apps.predict.dicom_results import (
    SC_SERIES_DESCRIPTION,
    SR_SERIES_DESCRIPTION,
    Finding,
    ModelInfo,
    ResultUids,
    build_sc,
    build_sr,
    describe_threshold,
    evidence_header,
)
from resnet_apps.predict.folder import ERROR_COLUMNS, ERRORS_CSV, PREDICTIONS_CSV, image_id, predict_folder

SCHEME_PREFIX = "dicomweb+"
TOKEN_ENV = "RESNET_APPS_DICOMWEB_TOKEN"
USER_ENV = "RESNET_APPS_DICOMWEB_USER"
PASSWORD_ENV = "RESNET_APPS_DICOMWEB_PASSWORD"
# series that hold no image to classify (reports, states, our own outputs)
NON_IMAGE_MODALITIES = frozenset({"SR", "PR", "KO", "SEG", "REG", "RTSTRUCT", "DOC", "PLAN", "RWV"})
OUR_SERIES_PREFIX = "resnet_apps "
ORIGINAL_SYNTAX = (("application/dicom", "*"),)
EXPLICIT_LE = (("application/dicom", "1.2.840.10008.1.2.1"),)
RETRY_STATUSES = (500, 502, 503, 504)

# DICOM JSON tags (PS3.18 F.2)
_STUDY, _SERIES, _SOP = "0020000D", "0020000E", "00080018"
_MODALITY, _SERIES_DESCRIPTION = "00080060", "0008103E"


def is_dicomweb(source: str) -> bool:
    """Whether a predict INPUT names a DICOMweb service (``dicomweb+http(s)://...``)."""
    return source.startswith(SCHEME_PREFIX)


def service_url(source: str) -> str:
    """``dicomweb+https://host/dicom-web`` -> ``https://host/dicom-web`` (checked)."""
    url = source[len(SCHEME_PREFIX) :] if is_dicomweb(source) else source
    if not url.startswith(("http://", "https://")):
        raise DicomWebError(
            f"{source}: not a DICOMweb URL; fix: write dicomweb+https://HOST[:PORT]/PATH (or dicomweb+http://)"
        )
    return url.rstrip("/")


class _BearerAuth(requests.auth.AuthBase):
    """``Authorization: Bearer <token>`` on every request."""

    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


def session_from_env(retries: int = 4, backoff: float = 0.5) -> requests.Session:
    """A requests session with the auth from the environment and bounded retries with backoff.

    Retries cover dropped connections, read errors and 5xx answers, for every method (a STOW of the
    same derived SOP Instance UID is idempotent): waits of ``backoff * 2**k`` seconds, ``retries`` times.
    Without a token or user in the environment, requests reads ``$NETRC`` or ``~/.netrc``.
    """
    session = requests.Session()
    token, user = os.environ.get(TOKEN_ENV), os.environ.get(USER_ENV)
    if token:
        session.auth = _BearerAuth(token)
    elif user:
        session.auth = (user, os.environ.get(PASSWORD_ENV, ""))
    policy = Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        backoff_factor=backoff,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=None,
        raise_on_status=True,
    )
    adapter = HTTPAdapter(max_retries=policy)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def connect(source: str, *, retries: int = 4, backoff: float = 0.5, timeout: float = 60) -> DICOMwebClient:
    """A DICOMweb client for ``source`` (retries in the session: dicomweb-client's own are turned off)."""
    client = DICOMwebClient(service_url(source), session=session_from_env(retries, backoff), timeout=timeout)
    client.set_http_retry_params(retry=False)
    return client


class _Server:
    """Turns a failed request (after its retries) into a DicomWebError that says what to do."""

    def __init__(self, client: DICOMwebClient, what: str) -> None:
        self.url, self.what = client.base_url, what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: Any) -> None:
        if not isinstance(error, requests.exceptions.RequestException):
            return
        status = getattr(getattr(error, "response", None), "status_code", None)
        if status in (401, 403):
            fix = f"set {TOKEN_ENV}, or {USER_ENV} and {PASSWORD_ENV}, or a netrc entry for the host"
        elif status is not None and 400 <= status < 500:
            fix = "check the query parameters and the service URL (its DICOMweb root)"
        else:
            fix = "check that the server is up and reachable; rerun with the same --out to resume"
        raise DicomWebError(f"{self.url}: {self.what} failed ({type(error).__name__}: {error}); fix: {fix}")


@dataclass(frozen=True)
class InstanceRef:
    """One instance to classify: its UIDs (kept in memory only) and its local, hashed name."""

    study: str
    series: str
    sop: str

    @property
    def relative(self) -> str:
        """The CSV ``path``: hashed UIDs only."""
        return "/".join(str(hash_identifier(uid)) for uid in (self.study, self.series, self.sop)) + ".dcm"

    @property
    def image_id(self) -> str:
        return image_id(self.relative)


def _value(item: Mapping[str, Any], tag: str) -> str:
    values = item.get(tag, {}).get("Value") or [""]
    return str(values[0])


def search_all(
    search: Callable[..., list[dict[str, Any]]], page: int = 1000, **kwargs: Any
) -> list[dict[str, Any]]:
    """Every QIDO-RS match, page by page (``limit`` + ``offset``).

    dicomweb-client's ``get_remaining`` sends ``offset`` alone and stops on an empty page; a server that
    ignores ``offset`` without ``limit`` (Orthanc 1.10 with filters) then loops for ever. Here a short
    page ends the search, and a page that repeats the previous one (offset ignored) too.
    """
    found: list[dict[str, Any]] = []
    previous: list[dict[str, Any]] | None = None
    while True:
        subset = search(limit=page, offset=len(found), **kwargs)
        if subset == previous:
            break
        found += subset
        if len(subset) < page:
            break
        previous = subset
    return found


def find_studies(client: DICOMwebClient, studies: Sequence[str], query: str | None) -> list[str]:
    """The study UIDs to predict: the given ones, then those matching ``query`` (QIDO-RS, all pages)."""
    found = list(studies)
    if query:
        filters = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=True))
        with _Server(client, f"QIDO study search {filters}"):
            matches = search_all(client.search_for_studies, search_filters=filters)
        found += [uid for uid in (_value(m, _STUDY) for m in matches) if uid and uid not in found]
    return found


def list_instances(client: DICOMwebClient, study: str) -> list[InstanceRef]:
    """The study's instances in image series (reports, states and our own output series left out)."""
    with _Server(client, "QIDO series search"):
        series = search_all(client.search_for_series, study_instance_uid=study)
    refs: list[InstanceRef] = []
    for item in series:
        if _value(item, _MODALITY) in NON_IMAGE_MODALITIES or _value(item, _SERIES_DESCRIPTION).startswith(
            OUR_SERIES_PREFIX
        ):
            continue
        series_uid = _value(item, _SERIES)
        with _Server(client, "QIDO instance search"):
            found = search_all(
                client.search_for_instances, study_instance_uid=study, series_instance_uid=series_uid
            )
        refs += [InstanceRef(study, series_uid, _value(i, _SOP)) for i in found]
    return sorted(refs, key=lambda r: r.relative)


def stored_instances(client: DICOMwebClient, study: str, series_uid: str) -> set[str]:
    """SOP Instance UIDs already in one of our (derived) series of the study."""
    with _Server(client, "QIDO search of stored results"):
        found = search_all(
            client.search_for_instances, study_instance_uid=study, series_instance_uid=series_uid
        )
    return {_value(i, _SOP) for i in found}


def retrieve(client: DICOMwebClient, ref: InstanceRef, path: Path) -> Dataset:
    """WADO-RS one instance to ``path`` (a DICOM file) and return its header without pixels.

    Raises:
        ImageReadError: this instance cannot be had (4xx, undecodable body): list it and go on.
        requests.exceptions.RequestException: the server failed (the caller turns it into DicomWebError).

    The stored transfer syntax is asked for first (no server-side transcoding: pydicom's decoders
    read it as they read files); a body that is no DICOM Part 10 file (a legacy object stored without
    file meta) is fetched again, transcoded by the server to explicit VR little endian.
    """
    try:
        dataset = client.retrieve_instance(ref.study, ref.series, ref.sop, media_types=ORIGINAL_SYNTAX)
    except InvalidDicomError:
        try:  # one try: a server that cannot transcode this object answers the same each time
            dataset = client.retrieve_instance(ref.study, ref.series, ref.sop, media_types=EXPLICIT_LE)
        except (InvalidDicomError, requests.exceptions.RequestException) as error:
            raise ImageReadError(
                f"{ref.relative}: not a DICOM file, and not transcodable ({error})"
            ) from error
    except requests.exceptions.HTTPError as error:
        status = error.response.status_code if error.response is not None else None
        if status is None or status in (401, 403) or status >= 500:
            raise
        raise ImageReadError(f"{ref.relative}: WADO-RS answered {status} for this instance") from error
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(path, enforce_file_format=True)
    return evidence_header(dataset)


def store(client: DICOMwebClient, datasets: Sequence[Dataset], study: str) -> None:
    """STOW-RS into ``study``; a refused instance (FailedSOPSequence) is a DicomWebError."""
    with _Server(client, "STOW-RS store"):
        response = client.store_instances(list(datasets), study_instance_uid=study)
    failed = response.get("FailedSOPSequence") if response is not None else None
    if failed:
        reasons = [str(item.get("FailureReason", "?")) for item in failed]
        raise DicomWebError(
            f"{client.base_url}: the server refused {len(failed)} result object(s) (failure reasons "
            f"{reasons}); fix: check that it accepts Comprehensive SR and Secondary Capture storage"
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
) -> dict[str, Any]:
    """Classify the studies' image instances into ``out_dir`` CSVs and, optionally, store SR/SC back.

    Args:
        model: classification model ([B, C, S, S] -> [B, K] logits), from ``load_run``.
        meta: its checkpoint metadata.
        client: from :func:`connect`.
        out_dir: output folder (predictions.csv, errors.csv, gradcam/); an existing one resumes.
        model_info: name, version, weights sha256, stated in every SR.
        studies: Study Instance UIDs.
        query: QIDO-RS study filters, ``"ModalitiesInStudy=CR&StudyDate=20260101-"``.
        store_results: STOW-RS one SR per classified instance (+ one SC when ``gradcam``).
        gradcam: Grad-CAM overlays (``out_dir/gradcam``; stored as Secondary Captures with ``store``).
        batch_size: instances retrieved to disk and predicted together.
        device: torch device.

    Returns:
        Counts (studies, instances, predicted, errors, skipped_done, stored_sr, stored_sc) and timings
        in seconds (total, per stage, per study and per instance).
    """
    decision = Decision.from_meta(meta)
    if store_results and decision.multilabel:
        raise DicomWebError(
            "--store writes one finding per instance; a multi-label model is not supported yet"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pred_csv, err_csv = out / PREDICTIONS_CSV, out / ERRORS_CSV
    known = _rows_after(pred_csv, 0)
    failed = set(_rows_after(err_csv, 0))
    times = Timings()
    counts = dict.fromkeys(("instances", "predicted", "errors", "skipped_done", "stored_sr", "stored_sc"), 0)
    start = time.perf_counter()
    tick = time.perf_counter()
    study_uids = find_studies(client, studies, query)
    times.query += time.perf_counter() - tick
    for study in study_uids:
        study_start = time.perf_counter()
        refs = list_instances(client, study)
        done: set[str] = set()
        if store_results:
            series = ResultUids.for_source(study, "", model_info.weights_sha256).sr_series
            done = stored_instances(client, study, series)
        times.query += time.perf_counter() - study_start
        counts["instances"] += len(refs)
        todo = []
        for ref in refs:
            uids = ResultUids.for_source(study, ref.sop, model_info.weights_sha256)
            finished = uids.sr_instance in done if store_results else ref.image_id in known
            if finished or ref.image_id in failed:
                counts["skipped_done"] += 1
            else:
                todo.append(ref)
        for batch in _batches(todo, batch_size):
            with tempfile.TemporaryDirectory(prefix="resnet_apps_dicomweb_") as tmp:
                headers: dict[str, Dataset] = {}
                tick = time.perf_counter()
                for ref in batch:
                    try:
                        with _Server(client, "WADO-RS retrieve"):  # server failures stop the run
                            headers[ref.image_id] = retrieve(client, ref, Path(tmp) / ref.relative)
                    except ImageReadError as error:  # this instance only: listed, the run goes on
                        _append_error(out, ref, f"{type(error).__name__}: {error}")
                        failed.add(ref.image_id)
                        counts["errors"] += 1
                times.retrieve += time.perf_counter() - tick
                tick = time.perf_counter()
                offsets = _size(pred_csv), _size(err_csv)
                if any(ref.image_id not in known for ref in batch if ref.image_id in headers):
                    result = predict_folder(
                        model, meta, [tmp], out, batch_size=batch_size, gradcam=gradcam, device=device,
                        progress=False,
                    )  # fmt: skip
                    counts["predicted"] += result["predicted"]
                    counts["errors"] += result["errors"]
                known.update(_rows_after(pred_csv, offsets[0]))
                failed.update(_rows_after(err_csv, offsets[1]))
                times.predict += time.perf_counter() - tick
            if store_results:
                tick = time.perf_counter()
                for ref in batch:
                    if ref.image_id in headers and ref.image_id in known:
                        stored = _store_one(client, ref, headers[ref.image_id], known[ref.image_id], decision,
                                            model_info, out / "gradcam" if gradcam else None)  # fmt: skip
                        counts["stored_sr"] += 1
                        counts["stored_sc"] += int(stored)
                times.store += time.perf_counter() - tick
        times.per_study.append(time.perf_counter() - study_start)
    seconds = time.perf_counter() - start
    handled = max(counts["instances"] - counts["skipped_done"], 1)
    return {
        "source": client.base_url,
        "studies": len(study_uids),
        **counts,
        "seconds": seconds,
        "seconds_query": times.query,
        "seconds_retrieve": times.retrieve,
        "seconds_predict": times.predict,
        "seconds_store": times.store,
        "seconds_per_study": seconds / max(len(study_uids), 1),
        "seconds_per_instance": seconds / handled,
        "csv": pred_csv,
        "errors_csv": err_csv,
    }


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
    uids = ResultUids.for_source(ref.study, ref.sop, model_info.weights_sha256)
    with warnings.catch_warnings():
        # highdicom's person-name checks quote the patient's name in the warning: never into logs
        warnings.simplefilter("ignore", UserWarning)
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


__all__ = [
    "SC_SERIES_DESCRIPTION",
    "SR_SERIES_DESCRIPTION",
    "InstanceRef",
    "connect",
    "find_studies",
    "is_dicomweb",
    "list_instances",
    "predict_dicomweb",
    "service_url",
    "session_from_env",
]
