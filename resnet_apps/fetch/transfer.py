"""One file over HTTP(S) with Range resume into ``<file>.part``, sha256 verification and bounded retries.

stdlib only (urllib): the fetcher must work in a bare environment and be testable against a local
``http.server``. Every socket operation has a timeout, and the whole download an overall ``deadline``: a
server that drips one byte per second never trips a per-read timeout, only the deadline. Every loop is
bounded by ``retries``. Plain ``http://`` (and a redirect from https to http) is refused unless
``allow_insecure``, except on the loopback interface, where nobody can sit in between.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from resnet_apps.errors import ChecksumError, FetchError
from resnet_apps.io.atomic import atomic_write_json

CHUNK = 1 << 20
# seconds to wait before retry n (n = 1, 2, ...): BACKOFF_S * n; tests set it to 0
BACKOFF_S = 1.0
CHECKSUMS_FILE = ".checksums.json"
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class DeadlineExceeded(Exception):
    """The overall deadline passed mid-transfer (internal: ``download`` turns it into a FetchError)."""


def is_insecure(url: str) -> bool:
    """True for a plain-HTTP URL to anything but the loopback interface."""
    parts = urllib.parse.urlsplit(url)
    return parts.scheme == "http" and (parts.hostname or "") not in _LOOPBACK


def insecure_message(url: str, what: str = "") -> str:
    return (
        f"{url}: {what}plain http:// can be altered by anyone on the network path, and the checksum "
        "recorded on a first download would then pin the altered file; fix: use an https:// URL (or "
        "--base-url https://MIRROR), or pass --allow-insecure if you trust this network"
    )


class _NoDowngrade(urllib.request.HTTPRedirectHandler):
    """Follows redirects, but not from https to plain http (unless insecure downloads are allowed)."""

    def __init__(self, allow_insecure: bool) -> None:
        self.allow_insecure = allow_insecure

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        if not self.allow_insecure and is_insecure(newurl):
            raise FetchError(insecure_message(req.full_url, f"redirected to {newurl}: "))
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def md5_file(path: Path) -> str:
    """Hex md5 of a file: only to check a publisher's published md5 (Zenodo), never as our own pin."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def recorded_checksums(root: Path) -> dict[str, str]:
    """``{filename: sha256}`` recorded by earlier fetches under ``root`` (empty when none)."""
    path = root / CHECKSUMS_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise FetchError(
            f"{path}: unreadable checksum record ({error}); delete it to record checksums anew"
        ) from error
    return {str(k): str(v) for k, v in data.items()}


def record_checksum(root: Path, filename: str, sha256: str) -> None:
    """Add ``filename -> sha256`` to ``root/.checksums.json`` (atomic replace)."""
    data = recorded_checksums(root)
    data[filename] = sha256
    atomic_write_json(root / CHECKSUMS_FILE, data, indent=2, sort_keys=True)


def _remaining(deadline_at: float | None) -> float:
    if deadline_at is None:
        return float("inf")
    left = deadline_at - time.monotonic()
    if left <= 0:
        raise DeadlineExceeded
    return left


def _fetch_once(
    url: str,
    part: Path,
    headers: Mapping[str, str],
    timeout: float,
    deadline_at: float | None = None,
    allow_insecure: bool = False,
) -> None:
    """Append the rest of ``url`` to ``part`` (Range from its current size); ConnectionError if cut short.

    Raises DeadlineExceeded once ``time.monotonic()`` passes ``deadline_at`` (checked between reads, and
    every socket wait is capped by the time left, so the overrun is a fraction of a second).
    """
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "resnet-apps-fetch/1", **headers})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    opener = urllib.request.build_opener(_NoDowngrade(allow_insecure))
    try:
        response = opener.open(request, timeout=min(timeout, _remaining(deadline_at)))
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            # the server has nothing past our offset: the .part is stale or complete; start over to be safe
            part.unlink()
            raise ConnectionError(f"HTTP 416 for a resume at byte {offset}; restarting") from error
        raise
    with response:
        status = getattr(response, "status", 200)
        mode = "ab" if offset and status == 206 else "wb"  # 200 to a Range request: the server restarts
        expected_total = None
        length = response.headers.get("Content-Length")
        if length is not None:
            expected_total = int(length) + (offset if mode == "ab" else 0)
        sock = _socket_of(response)
        with part.open(mode) as handle:
            while True:
                if sock is not None:  # each wait is capped by the deadline, not only by the read timeout
                    sock.settimeout(min(timeout, _remaining(deadline_at)))
                block = response.read1(CHUNK)  # what has arrived (read() would wait for a whole MiB)
                if not block:
                    break
                handle.write(block)
                _remaining(deadline_at)
    size = part.stat().st_size
    if expected_total is not None and size < expected_total:
        raise ConnectionError(f"connection closed after {size} of {expected_total} bytes")


def _socket_of(response: object) -> socket.socket | None:
    """The socket under a urllib response (CPython's layout), or None where it cannot be reached."""
    raw = getattr(getattr(response, "fp", None), "raw", None)
    sock = getattr(raw, "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


def download(
    url: str,
    dest: Path,
    *,
    sha256: str | None,
    retries: int = 3,
    timeout: float = 60.0,
    headers: Mapping[str, str] | None = None,
    deadline: float | None = None,
    allow_insecure: bool = False,
    md5: str | None = None,
) -> str:
    """Download ``url`` to ``dest`` (resuming ``dest.part``), verify it and return its sha256.

    Args:
        url: http(s) URL of the file.
        dest: final path; bytes go to ``dest.with_suffix(dest.suffix + ".part")`` until verified.
        sha256: expected hex digest, or None to accept (and return) whatever arrives complete.
        retries: retries after the first attempt, for interrupted downloads (resumed with a Range request)
            and checksum mismatches (file deleted and downloaded again).
        timeout: seconds for each connect / read on the socket.
        headers: extra request headers (e.g. Authorization for Kaggle).
        deadline: seconds for the whole download, retries included (None: no limit); the ``.part``
            stays, so the next call resumes it.
        allow_insecure: accept a plain http:// URL (or a redirect to one) to a non-loopback host.
        md5: the publisher's md5 (Zenodo publishes one per file), checked like ``sha256``.

    Raises:
        FetchError: still failing after the retries (names the URL, the file and the fix).
        ChecksumError: the file arrived complete but never matched ``sha256``.
    """
    if not url.startswith(("http://", "https://")):
        raise FetchError(
            f"{url}: only http(s) URLs can be fetched; download it manually and place it at {dest}"
        )
    if is_insecure(url) and not allow_insecure:
        raise FetchError(insecure_message(url))
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    last_error: str = "no attempt made"
    mismatches = 0
    started = time.monotonic()
    deadline_at = None if deadline is None else started + deadline
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(min(BACKOFF_S * attempt, max(0.0, (deadline_at or float("inf")) - time.monotonic())))
        try:
            _fetch_once(url, part, headers or {}, timeout, deadline_at, allow_insecure)
        except DeadlineExceeded:
            size = part.stat().st_size if part.exists() else 0
            raise FetchError(
                f"{url}: not complete within the {round(deadline or 0, 1):g} s deadline ({size} bytes in "
                f"{time.monotonic() - started:.1f} s, kept in {part}); the next fetch resumes it. Fix: "
                "allow more time (--timeout SECONDS), try a mirror (--base-url URL), or download the file "
                f"by hand and place it at {dest}"
            ) from None
        except urllib.error.HTTPError as error:
            last_error = f"HTTP {error.code} {error.reason}"
            if error.code in (401, 403, 404):
                break  # retrying will not help: wrong URL or missing credentials
            continue
        except (
            TimeoutError,
            urllib.error.URLError,
            http.client.HTTPException,
            ConnectionError,
            OSError,
        ) as error:
            last_error = f"{type(error).__name__}: {error}"  # keep the .part: the next attempt resumes it
            continue
        digest = sha256_file(part)
        wrong = None
        if sha256 is not None and digest != sha256.lower():
            wrong = f"sha256 {digest} != expected {sha256}"
        elif md5 is not None and (got := md5_file(part)) != md5.lower():
            wrong = f"md5 {got} != the publisher's {md5}"
        if wrong is not None:
            mismatches += 1
            last_error = wrong
            part.unlink()  # a corrupt file cannot be resumed: start again from byte 0
            continue
        os.replace(part, dest)
        return digest
    if mismatches and mismatches == retries + 1:
        raise ChecksumError(
            f"{url}: downloaded {retries + 1} times into {dest} and the sha256 never matched ({last_error}); "
            f"the file on the server may have changed: check the source, or if you trust it delete the entry "
            f"for {dest.name} in {dest.parent.parent / CHECKSUMS_FILE}"
        )
    raise FetchError(
        f"{url}: download to {dest} failed after {attempt + 1} attempt(s) ({last_error}); check the network, "
        f"or download it manually and place it at {dest}, then run the fetch again"
    )
