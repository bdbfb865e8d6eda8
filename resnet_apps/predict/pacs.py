"""DICOMweb protocol helpers on dicomweb-client: auth from the environment, bounded retries, typed errors.

QIDO-RS searches page by page, WADO-RS retrieves one instance at a time in its stored transfer syntax,
STOW-RS stores result objects. Every failure of the server (after the session's retries) becomes a
:class:`~resnet_apps.errors.DicomWebError` that says what to do; an instance that alone cannot be had
is an ``ImageReadError`` (the caller lists it and goes on). UIDs stay in memory: what reaches a local
file is :attr:`InstanceRef.relative`, made of ``io.hash_identifier`` hashes.

Auth comes from the environment (``RESNET_APPS_DICOMWEB_TOKEN`` for a bearer token, or
``RESNET_APPS_DICOMWEB_USER`` / ``RESNET_APPS_DICOMWEB_PASSWORD``), else from a netrc file
(``~/.netrc`` or ``$NETRC``, read by requests), never from the command line; TLS certificates are
verified (``REQUESTS_CA_BUNDLE`` names a private CA).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from resnet_apps.errors import DicomWebError, ImageReadError
from resnet_apps.io import hash_identifier
from resnet_apps.predict.dicom_results import evidence_header
from resnet_apps.predict.folder import image_id

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


class ServerErrors:
    """Turns a failed request (after its retries) into a DicomWebError that says what to do.

    The message names the server and the transaction but no request path: paths and query strings
    hold UIDs and, for a QIDO query by patient, the patient's ID, which must not reach a log.
    """

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
        detail = f"HTTP {status}" if status is not None else _without_urls(str(error))
        raise DicomWebError(f"{self.url}: {self.what} failed ({type(error).__name__}: {detail}); fix: {fix}")


def _without_urls(text: str) -> str:
    """An error text with every request path / URL cut out (urllib3 quotes them)."""
    return re.sub(r"(url: |https?://)\S+", r"\1<...>", text)


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
        with ServerErrors(client, "QIDO study search"):
            matches = search_all(client.search_for_studies, search_filters=filters)
        found += [uid for uid in (_value(m, _STUDY) for m in matches) if uid and uid not in found]
    return found


def list_instances(client: DICOMwebClient, study: str) -> list[InstanceRef]:
    """The study's instances in image series (reports, states and our own output series left out)."""
    with ServerErrors(client, "QIDO series search"):
        series = search_all(client.search_for_series, study_instance_uid=study)
    refs: list[InstanceRef] = []
    for item in series:
        if _value(item, _MODALITY) in NON_IMAGE_MODALITIES or _value(item, _SERIES_DESCRIPTION).startswith(
            OUR_SERIES_PREFIX
        ):
            continue
        series_uid = _value(item, _SERIES)
        with ServerErrors(client, "QIDO instance search"):
            found = search_all(
                client.search_for_instances, study_instance_uid=study, series_instance_uid=series_uid
            )
        refs += [InstanceRef(study, series_uid, _value(i, _SOP)) for i in found]
    return sorted(refs, key=lambda r: r.relative)


def stored_instances(client: DICOMwebClient, study: str, series_uid: str) -> set[str]:
    """SOP Instance UIDs already in one of our (derived) series of the study."""
    with ServerErrors(client, "QIDO search of stored results"):
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
    with ServerErrors(client, "STOW-RS store"):
        response = client.store_instances(list(datasets), study_instance_uid=study)
    failed = response.get("FailedSOPSequence") if response is not None else None
    if failed:
        reasons = [str(item.get("FailureReason", "?")) for item in failed]
        raise DicomWebError(
            f"{client.base_url}: the server refused {len(failed)} result object(s) (failure reasons "
            f"{reasons}); fix: check that it accepts Comprehensive SR and Secondary Capture storage"
        )
