"""DICOMweb protocol edge cases without a PACS: retries with backoff then a typed error, auth, derived UIDs."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydicom.uid import UID

from resnet_apps.errors import DicomWebError
from resnet_apps.predict.dicom_results import ModelInfo, ResultUids, derived_uid
from resnet_apps.predict.pacs import connect, find_studies, service_url


class _Script:
    """What the fake server answers, request by request, and what it saw."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.seen: list[dict[str, str]] = []


@pytest.fixture
def fake() -> Iterator[tuple[str, _Script]]:
    """A loopback HTTP server answering QIDO with the scripted statuses (the last one repeats)."""
    script = _Script([])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            script.seen.append({"path": self.path, "auth": self.headers.get("Authorization", "")})
            status = script.statuses[min(len(script.seen), len(script.statuses)) - 1]
            body = json.dumps([]).encode() if status == 200 else b"busy"
            self.send_response(status)
            self.send_header("Content-Type", "application/dicom+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"dicomweb+http://127.0.0.1:{server.server_address[1]}/dicom-web", script
    finally:
        server.shutdown()
        server.server_close()


def test_5xx_is_retried_with_backoff_then_a_typed_error(fake: tuple[str, _Script]) -> None:
    url, script = fake
    script.statuses = [503]
    with pytest.raises(DicomWebError, match="QIDO study search.*fix: check that the server is up") as caught:
        find_studies(connect(url, retries=2, backoff=0.01), [], "PatientID=PID-0001")
    assert len(script.seen) == 3  # the first try and 2 retries, then it stops
    assert "PID-0001" not in str(caught.value)  # no query string (a patient's ID here) in the message


def test_a_transient_5xx_is_absorbed(fake: tuple[str, _Script]) -> None:
    url, script = fake
    script.statuses = [502, 500, 200]
    assert find_studies(connect(url, retries=3, backoff=0.01), ["1.2.3"], "StudyDate=20260101-") == ["1.2.3"]
    assert len(script.seen) == 3
    assert "StudyDate=20260101-" in script.seen[-1]["path"]


def test_auth_from_the_environment(fake: tuple[str, _Script], monkeypatch: pytest.MonkeyPatch) -> None:
    url, script = fake
    script.statuses = [401]
    monkeypatch.setenv("RESNET_APPS_DICOMWEB_TOKEN", "tok-123")
    with pytest.raises(DicomWebError, match="RESNET_APPS_DICOMWEB_TOKEN"):
        find_studies(connect(url, retries=2, backoff=0.01), [], "ModalitiesInStudy=CR")
    assert script.seen[0]["auth"] == "Bearer tok-123"
    assert len(script.seen) == 1  # a refusal is not retried
    monkeypatch.delenv("RESNET_APPS_DICOMWEB_TOKEN")
    monkeypatch.setenv("RESNET_APPS_DICOMWEB_USER", "alice")
    monkeypatch.setenv("RESNET_APPS_DICOMWEB_PASSWORD", "pw")
    script.statuses = [200]
    find_studies(connect(url), [], "ModalitiesInStudy=CR")
    assert script.seen[-1]["auth"] == "Basic YWxpY2U6cHc="  # alice:pw


def test_a_dropped_connection_is_a_typed_error() -> None:
    with socket.socket() as sock:  # a port that nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DicomWebError, match="ConnectionError"):
        find_studies(
            connect(f"dicomweb+http://127.0.0.1:{port}/dicom-web", retries=1, backoff=0.01), [], "A=B"
        )


def test_service_url_and_derived_uids() -> None:
    assert service_url("dicomweb+https://pacs.example/dicom-web/") == "https://pacs.example/dicom-web"
    with pytest.raises(DicomWebError, match="dicomweb\\+https://"):
        service_url("dicomweb+ftp://pacs")
    a = ResultUids.for_source("1.2.3", "1.2.3.4", "ab" * 32)
    assert a == ResultUids.for_source("1.2.3", "1.2.3.4", "ab" * 32)  # a rerun finds the same UIDs
    assert a.sr_instance != ResultUids.for_source("1.2.3", "1.2.3.4", "cd" * 32).sr_instance  # other weights
    assert a.sr_series == ResultUids.for_source("1.2.3", "1.2.3.5", "ab" * 32).sr_series  # one series a study
    info = ModelInfo("m", "v", "ab" * 32)
    assert info.result_key(0.5) != info.result_key(0.6)  # a new operating threshold: new results
    for uid in (a.sr_series, a.sr_instance, a.sc_series, a.sc_instance, derived_uid("x")):
        assert UID(uid).is_valid and uid.startswith("2.25.")
