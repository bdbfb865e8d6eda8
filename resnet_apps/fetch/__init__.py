"""``resnet-apps data fetch NAME --root DIR``: download public datasets, verify, extract and lay them out.

``fetch_dataset(name, root)`` downloads every file of ``DATASETS[name]`` into ``root/.downloads/`` (resuming a
``.part`` file with an HTTP Range request), checks its sha256 (the one in the table, or the one recorded in
``root/.checksums.json`` by the first fetch when the table has none), extracts the archives safely and moves
the files into ``root/<target>/`` as the recipes expect, then writes ``root/<target>/.complete``. A second
call finds the marker and returns at once. ``base_url`` replaces each file's host and path by
``base_url/filename`` (a mirror, or a local test server).

Trust: where the publisher gives a checksum (Zenodo's md5 for EuroSAT) the first download is checked
against it. Elsewhere no publisher checksum exists and the first download is trusted as it arrives
("trust on first use"): its sha256 is recorded and every later fetch must match it, and the log says so.
Plain http:// is refused unless ``allow_insecure``; ``deadline`` bounds the whole fetch in seconds.

A file you download yourself is used as is: place it at ``root/.downloads/<filename>`` and run the fetch.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from resnet_apps.errors import ChecksumError, FetchError
from resnet_apps.fetch.layout import (
    layout_cloud38,
    layout_dubai,
    layout_eurosat_ms,
    layout_eurosat_rgb,
    layout_kermany,
    layout_nih,
    safe_extract,
)
from resnet_apps.fetch.transfer import download, md5_file, record_checksum, recorded_checksums, sha256_file

__all__ = ["DATASETS", "ChecksumError", "FetchError", "fetch_dataset", "list_datasets"]

_NIH_BOX = "https://nihcc.box.com/shared/static/"
# images_001.tar.gz ... images_012.tar.gz, in order (the NIH's own batch_download_zips.py links)
_NIH_IDS = (
    "vfk49d74nhbxq3nqjg0900w5nvkorp5c",
    "i28rlmbvmfjbl8p2n3ril0pptcmcu9d1",
    "f1t00wrtdk94satdfb9olcolqx20z2jp",
    "0aowwzs5lhjrceb3qp67ahp0rd1l1etg",
    "v5e3goj22zr6h8tzualxfsqlqaygfbsn",
    "asi7ikud9jwnkrnkj99jnpfkjdes7l6l",
    "jn1b4mw4n6lnh74ovmcjb8y48h8xj07n",
    "tvpxmn7qyrgl0w8wfh9kqfjskv6nmm1j",
    "upyy3ml7qdumlgk2rfcvlb9k6gvqq2pj",
    "l6nilvfa9cg3s28tqv1qc1olm3gnz54p",
    "hhq8fkdgvcari67vfhs7ppg2w6ni4jze",
    "ioqwiy20ihqwyr8pf4c24eazhh281pbu",
)

# name -> what to download and how to lay it out. sha256 None: not known for certain here; the first fetch
# records it (root/.checksums.json, trust on first use) and later fetches verify against it. md5: the
# publisher's own checksum, checked on every download. url None: no stable direct link (download
# manually). auth "kaggle": needs KAGGLE_USERNAME and KAGGLE_KEY.
DATASETS: dict[str, dict[str, Any]] = {
    "eurosat_ms": {
        "card": "eurosat_ms",
        "target": "eurosat_ms",
        "layout": layout_eurosat_ms,
        "auth": None,
        "files": [
            {
                "filename": "EuroSAT_MS.zip",
                "sha256": None,
                "md5": "091174add3c8e680a49244acf185b9f0",  # published by Zenodo (2 065 402 329 bytes)
                "url": "https://zenodo.org/records/7711810/files/EuroSAT_MS.zip",
            }
        ],
    },
    "eurosat_rgb": {
        "card": "eurosat_rgb",
        "target": "eurosat_rgb",
        "layout": layout_eurosat_rgb,
        "auth": None,
        "files": [
            {
                "filename": "EuroSAT_RGB.zip",
                "sha256": None,
                "md5": "f46e308c4d50d4bf32fedad2d3d62f3b",  # published by Zenodo (94 658 721 bytes)
                "url": "https://zenodo.org/records/7711810/files/EuroSAT_RGB.zip",
            }
        ],
    },
    "chest_xray_pneumonia_kermany": {
        "card": "chest_xray_pneumonia_kermany",
        "target": "chest_xray_pneumonia_kermany",
        "layout": layout_kermany,
        "auth": None,
        "files": [
            {
                "filename": "ChestXRay2017.zip",
                "sha256": None,
                "url": "https://data.mendeley.com/public-files/datasets/rscbjbr9sj/files/"
                "f12eaf6d-6023-432f-acc9-80c9d7393433/file_downloaded",
            }
        ],
    },
    "nih_chestxray14": {
        "card": "nih_chestxray14",
        "target": "nih_chestxray14",
        "layout": layout_nih,
        "auth": None,
        "files": [
            *(
                {"filename": f"images_{i:03d}.tar.gz", "sha256": None, "url": f"{_NIH_BOX}{box_id}.gz"}
                for i, box_id in enumerate(_NIH_IDS, start=1)
            ),
            # the label CSV sits in the Box folder without a stable direct link
            {
                "filename": "Data_Entry_2017.csv",
                "sha256": None,
                "url": None,
                "extract": False,
                "manual_from": "https://nihcc.app.box.com/v/ChestXray-NIHCC",
            },
        ],
    },
    "cloud38_landsat8": {
        "card": "cloud38_landsat8",
        "target": "cloud38_landsat8_segmentation",
        "layout": layout_cloud38,
        "auth": None,
        # the authors' university (SFU) share; also on Kaggle:
        # sorour/38cloud-cloud-segmentation-in-satellite-images
        "files": [
            {
                "filename": "38-Cloud.zip",
                "sha256": None,
                "url": "https://vault.sfu.ca/index.php/s/pymNqYF09JkM8Bp/download",
            }
        ],
    },
    "dubai_aerial_landcover": {
        "card": "dubai_aerial_landcover",
        "target": "dubai_aerial_landcover_segmentation",
        "layout": layout_dubai,
        "auth": "kaggle",
        "files": [
            {
                "filename": "semantic-segmentation-of-aerial-imagery.zip",
                "sha256": None,
                "url": "https://www.kaggle.com/api/v1/datasets/download/humansintheloop/"
                "semantic-segmentation-of-aerial-imagery",
            }
        ],
    },
}

MARKER = ".complete"


def list_datasets() -> list[str]:
    """Names accepted by :func:`fetch_dataset`."""
    return sorted(DATASETS)


def _auth_headers(name: str, auth: str | None, base_url: str | None, dest: Path, url: str) -> dict[str, str]:
    if auth is None or base_url is not None:  # a mirror is assumed to be open
        return {}
    if auth == "kaggle":
        user, key = os.environ.get("KAGGLE_USERNAME"), os.environ.get("KAGGLE_KEY")
        if not (user and key):
            raise FetchError(
                f"{name}: {url} needs Kaggle credentials: set KAGGLE_USERNAME and KAGGLE_KEY (from your "
                f"Kaggle account's API token), or download the archive in a browser and place it at {dest}"
            )
        token = base64.b64encode(f"{user}:{key}".encode()).decode("ascii")
        return {"Authorization": f"Basic {token}"}
    raise FetchError(f"{name}: unknown auth kind {auth!r} in DATASETS")


def _obtain(
    name: str,
    spec: dict[str, Any],
    entry: dict[str, Any],
    root: Path,
    base_url: str | None,
    retries: int,
    timeout: float,
    deadline_at: float | None = None,
    allow_insecure: bool = False,
    log: Callable[[str], None] = print,
) -> tuple[Path, str]:
    """Return a verified local copy of one file of a dataset and its sha256, downloading it if needed."""
    filename = entry["filename"]
    dest = root / ".downloads" / filename
    expected = entry.get("sha256") or recorded_checksums(root).get(filename)
    md5 = entry.get("md5")
    if dest.is_file():
        digest = sha256_file(dest)
        if expected is None and (md5 is None or md5_file(dest) == md5):
            _record(root, filename, digest, md5, log, "placed by hand")  # its hash is recorded now
            return dest, digest
        if digest == expected:
            return dest, digest
        dest.unlink()  # stale or corrupt: download again below
    url = f"{base_url.rstrip('/')}/{filename}" if base_url else entry.get("url")
    if url is None:
        raise FetchError(
            f"{name}: {filename} has no direct download link; download it from "
            f"{entry.get('manual_from')} and "
            f"place it at {dest}, then run the fetch again"
        )
    headers = _auth_headers(name, spec.get("auth"), base_url, dest, url)
    left = None if deadline_at is None else deadline_at - time.monotonic()
    if left is not None and left <= 0:
        raise FetchError(
            f"{name}: the --timeout ran out before {filename} could start; fix: allow more time "
            "(--timeout SECONDS); the files already downloaded are kept"
        )
    digest = download(
        url,
        dest,
        sha256=expected,
        md5=md5,
        retries=retries,
        timeout=timeout,
        headers=headers,
        deadline=left,
        allow_insecure=allow_insecure,
    )
    if expected is None:
        _record(root, filename, digest, md5, log, f"downloaded from {url}")
    return dest, digest


def _record(
    root: Path, filename: str, digest: str, md5: str | None, log: Callable[[str], None], how: str
) -> None:
    """Pin a first copy's sha256, saying whether anything but the copy itself vouches for it."""
    record_checksum(root, filename, digest)
    if md5 is not None:
        log(f"{filename}: {how}; matches the publisher's md5 {md5}; sha256 {digest} recorded")
    else:
        log(
            f"{filename}: {how}; the publisher gives no checksum, so this first copy is trusted as it "
            f"arrived (trust on first use): sha256 {digest} recorded in {root / '.checksums.json'} and "
            "every later fetch must match it; compare it with a colleague's copy if the data matters"
        )


def fetch_dataset(
    name: str,
    root: str | Path,
    *,
    base_url: str | None = None,
    retries: int = 3,
    timeout: float = 60.0,
    deadline: float | None = None,
    allow_insecure: bool = False,
    log: Callable[[str], None] = print,
) -> Path:
    """Download, verify, extract and lay out one dataset; return ``root/<target>``.

    Args:
        name: a key of :data:`DATASETS` (see :func:`list_datasets`).
        root: folder that receives ``.downloads/``, ``.checksums.json`` and ``<target>/``.
        base_url: fetch each file from ``base_url/<filename>`` instead (mirror or test server).
        retries: retries per file after the first attempt (interrupted downloads resume, corrupt
            ones restart).
        timeout: socket timeout in seconds for each connect / read.
        deadline: seconds for all downloads of this call together (None: no limit); partial files are
            kept and resumed by the next call.
        allow_insecure: accept plain http:// to a host other than the loopback interface.
        log: receives one line per file on how its checksum was established.

    Raises:
        FetchError: unknown name, network failure after the retries, missing credentials, unsafe archive.
        ChecksumError: a file that never matched its expected or recorded sha256.
    """
    if name not in DATASETS:
        raise FetchError(f"unknown dataset {name!r}; choose one of: {', '.join(list_datasets())}")
    spec = DATASETS[name]
    root = Path(root).expanduser()
    target = root / spec["target"]
    if (target / MARKER).is_file():
        return target
    if target.exists() and any(target.iterdir()):
        raise FetchError(
            f"{target}: exists without a {MARKER} marker (an earlier fetch stopped half-way, or other "
            "files); "
            "delete that folder and run the fetch again"
        )
    root.mkdir(parents=True, exist_ok=True)
    deadline_at = None if deadline is None else time.monotonic() + deadline
    obtained = [
        _obtain(name, spec, entry, root, base_url, retries, timeout, deadline_at, allow_insecure, log)
        for entry in spec["files"]
    ]
    files = [path for path, _ in obtained]
    work = root / ".extract" / name
    shutil.rmtree(work, ignore_errors=True)
    try:
        for entry, path in zip(spec["files"], files, strict=True):
            if entry.get("extract", True):
                safe_extract(path, work)
            else:
                (work / path.name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, work / path.name)
        staging = root / ".extract" / f"{name}.layout"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        layout: Callable[[Path, Path], None] = spec["layout"]
        layout(work, staging)
        marker = {
            "name": name,
            "card": spec["card"],
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "files": {p.name: digest for p, digest in obtained},
        }
        (staging / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        if target.exists():
            target.rmdir()  # empty (checked above)
        os.replace(staging, target)  # the dataset appears complete or not at all
    finally:
        shutil.rmtree(root / ".extract", ignore_errors=True)
    return target
