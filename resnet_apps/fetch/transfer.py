"""One file over HTTP(S) with Range resume into ``<file>.part``, sha256 verification and bounded retries.

stdlib only (urllib): the fetcher must work in a bare environment and be testable against a local
``http.server``. Every network operation has a timeout; every loop is bounded by ``retries``.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from resnet_apps.errors import ChecksumError, FetchError
from resnet_apps.io.atomic import atomic_write_json

CHUNK = 1 << 20
# seconds to wait before retry n (n = 1, 2, ...): BACKOFF_S * n; tests set it to 0
BACKOFF_S = 1.0
CHECKSUMS_FILE = ".checksums.json"


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


def _fetch_once(url: str, part: Path, headers: Mapping[str, str], timeout: float) -> None:
    """Append the rest of ``url`` to ``part`` (Range from its current size); ConnectionError if cut short."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "resnet-apps-fetch/1", **headers})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (http/https only, checked)
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
        with part.open(mode) as handle:
            while True:
                block = response.read(CHUNK)
                if not block:
                    break
                handle.write(block)
    size = part.stat().st_size
    if expected_total is not None and size < expected_total:
        raise ConnectionError(f"connection closed after {size} of {expected_total} bytes")


def download(
    url: str,
    dest: Path,
    *,
    sha256: str | None,
    retries: int = 3,
    timeout: float = 60.0,
    headers: Mapping[str, str] | None = None,
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

    Raises:
        FetchError: still failing after the retries (names the URL, the file and the fix).
        ChecksumError: the file arrived complete but never matched ``sha256``.
    """
    if not url.startswith(("http://", "https://")):
        raise FetchError(
            f"{url}: only http(s) URLs can be fetched; download it manually and place it at {dest}"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    last_error: str = "no attempt made"
    mismatches = 0
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(BACKOFF_S * attempt)
        try:
            _fetch_once(url, part, headers or {}, timeout)
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
        if sha256 is not None and digest != sha256.lower():
            mismatches += 1
            last_error = f"sha256 {digest} != expected {sha256}"
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
