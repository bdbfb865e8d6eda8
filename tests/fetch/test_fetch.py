"""Dataset fetcher against a local HTTP server on 127.0.0.1 (no internet): layout, checksums, retry, resume.

The server (http.server in a thread, port 0) serves archives built here and can, once per file, corrupt the
bytes or close the connection after N bytes; it records every request's path and Range header.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from resnet_apps import fetch
from resnet_apps.errors import ChecksumError, FetchError
from resnet_apps.fetch import transfer as transfer_module
from resnet_apps.fetch.layout import EUROSAT_CLASSES, safe_extract
from resnet_apps.fetch.transfer import sha256_file

# --- the local server --------------------------------------------------------------------------


@dataclass
class ServerState:
    files: dict[str, bytes] = field(default_factory=dict)
    corrupt_next: set[str] = field(default_factory=set)  # serve wrong bytes once
    corrupt_always: set[str] = field(default_factory=set)
    cut_next: dict[str, int] = field(default_factory=dict)  # close the connection after N bytes, once
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    drip: dict[str, float] = field(default_factory=dict)  # send one byte every N seconds
    redirect: dict[str, str] = field(default_factory=dict)  # answer 302 to this location


class _Handler(BaseHTTPRequestHandler):
    state: ServerState  # set on a per-test subclass

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        state = self.state
        name = self.path.lstrip("/")
        range_header = self.headers.get("Range")
        state.requests.append((name, range_header))
        if name in state.redirect:
            self.send_response(302)
            self.send_header("Location", state.redirect[name])
            self.end_headers()
            return
        if name not in state.files:
            self.send_error(404)
            return
        body = state.files[name]
        if name in state.corrupt_next or name in state.corrupt_always:
            state.corrupt_next.discard(name)
            body = bytes(b ^ 0xFF for b in body[:64]) + body[64:]  # same length, wrong bytes
        start = 0
        if range_header and range_header.startswith("bytes=") and range_header.endswith("-"):
            start = int(range_header[len("bytes=") : -1])
            if start >= len(body):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if name in state.drip:  # a stalled server: alive, never silent long enough to time out a read
            try:
                for i in range(len(payload)):
                    self.wfile.write(payload[i : i + 1])
                    self.wfile.flush()
                    time.sleep(state.drip[name])
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up
            return
        cut = state.cut_next.pop(name, None)
        if cut is not None:
            self.wfile.write(payload[:cut])  # then the handler returns and HTTP/1.0 closes the socket
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(payload)


@pytest.fixture
def server() -> Iterator[tuple[str, ServerState]]:
    state = ServerState()
    handler = type("Handler", (_Handler,), {"state": state})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transfer_module, "BACKOFF_S", 0.0)
    # the archives here are built by the tests, so the publisher's md5 of the real ones cannot match
    for name in ("eurosat_ms", "eurosat_rgb"):
        monkeypatch.setitem(fetch.DATASETS[name]["files"][0], "md5", None)


# --- archives built in the test ------------------------------------------------------------------


def _chip(class_index: int) -> np.ndarray:
    """A 13-band 4x4 uint16 chip whose values encode its class: band b holds 100 * class + b."""
    return (100 * class_index + np.arange(13, dtype=np.uint16))[:, None, None].repeat(4, 1).repeat(4, 2)


def _eurosat_zip() -> bytes:
    """EuroSAT_MS/<Class>/<Class>_1.tif for the 10 classes, as in the Zenodo archive (plus macOS junk)."""
    import rasterio
    from rasterio.io import MemoryFile
    from rasterio.transform import from_origin

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        for index, name in enumerate(EUROSAT_CLASSES):
            with MemoryFile() as memory:
                with memory.open(
                    driver="GTiff",
                    width=4,
                    height=4,
                    count=13,
                    dtype="uint16",
                    crs=rasterio.CRS.from_epsg(32632),
                    transform=from_origin(500000, 5000000, 10, 10),
                ) as dataset:
                    dataset.write(_chip(index))
                zf.writestr(f"EuroSAT_MS/{name}/{name}_1.tif", memory.read())
        zf.writestr("__MACOSX/EuroSAT_MS/._Forest", b"junk")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def eurosat_zip() -> bytes:
    return _eurosat_zip()


# --- tests -------------------------------------------------------------------------------------


def test_fetch_verifies_extracts_and_lays_out(
    tmp_path: Path, server: tuple[str, ServerState], eurosat_zip: bytes
) -> None:
    import rasterio

    url, state = server
    state.files["EuroSAT_MS.zip"] = eurosat_zip
    target = fetch.fetch_dataset("eurosat_ms", tmp_path, base_url=url)
    assert target == tmp_path / "eurosat_ms"
    # every class folder holds its chip, with the pixel values written above
    for index, name in enumerate(EUROSAT_CLASSES):
        with rasterio.open(target / name / f"{name}_1.tif") as dataset:
            np.testing.assert_array_equal(dataset.read(), _chip(index))
    labels = (target / "labels.csv").read_text().splitlines()
    assert labels[0] == "filename,label" and len(labels) == 11 and "Forest/Forest_1.tif,Forest" in labels
    assert not list(tmp_path.rglob("._*")), "macOS resource forks must not be laid out"
    # the sha256 was unknown: the first fetch records it, and the marker names it
    expected = hashlib.sha256(eurosat_zip).hexdigest()
    assert json.loads((tmp_path / ".checksums.json").read_text()) == {"EuroSAT_MS.zip": expected}
    assert json.loads((target / ".complete").read_text())["files"] == {"EuroSAT_MS.zip": expected}
    assert not (tmp_path / ".extract").exists()
    # idempotent: a second call returns at once without touching the network
    requests_before = len(state.requests)
    assert fetch.fetch_dataset("eurosat_ms", tmp_path, base_url=url) == target
    assert len(state.requests) == requests_before == 1


def test_corrupted_download_is_detected_and_retried(
    tmp_path: Path, server: tuple[str, ServerState], eurosat_zip: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, state = server
    state.files["EuroSAT_MS.zip"] = eurosat_zip
    state.corrupt_next.add("EuroSAT_MS.zip")
    digest = hashlib.sha256(eurosat_zip).hexdigest()
    monkeypatch.setitem(fetch.DATASETS["eurosat_ms"]["files"][0], "sha256", digest)
    target = fetch.fetch_dataset("eurosat_ms", tmp_path, base_url=url, retries=2)
    # first response corrupt -> deleted -> downloaded again from byte 0 (no Range: a bad file is not resumed)
    assert state.requests == [("EuroSAT_MS.zip", None), ("EuroSAT_MS.zip", None)]
    assert sha256_file(tmp_path / ".downloads" / "EuroSAT_MS.zip") == digest
    assert (target / "Forest" / "Forest_1.tif").is_file()


def test_interrupted_download_resumes_with_range(
    tmp_path: Path, server: tuple[str, ServerState], eurosat_zip: bytes
) -> None:
    url, state = server
    state.files["EuroSAT_MS.zip"] = eurosat_zip
    state.cut_next["EuroSAT_MS.zip"] = 4000
    assert len(eurosat_zip) > 8000
    fetch.fetch_dataset("eurosat_ms", tmp_path, base_url=url, retries=2)
    assert state.requests == [("EuroSAT_MS.zip", None), ("EuroSAT_MS.zip", "bytes=4000-")]
    assert (tmp_path / ".downloads" / "EuroSAT_MS.zip").read_bytes() == eurosat_zip
    assert not (tmp_path / ".downloads" / "EuroSAT_MS.zip.part").exists()


def test_recorded_checksum_is_verified_on_later_fetches(
    tmp_path: Path, server: tuple[str, ServerState], eurosat_zip: bytes
) -> None:
    url, state = server
    state.files["EuroSAT_MS.zip"] = eurosat_zip
    fetch.fetch_dataset("eurosat_ms", tmp_path / "first", base_url=url)
    # a second root that shares the recorded checksum, while the server now hands out different bytes
    second = tmp_path / "second"
    second.mkdir()
    (second / ".checksums.json").write_text((tmp_path / "first" / ".checksums.json").read_text())
    state.corrupt_always.add("EuroSAT_MS.zip")
    with pytest.raises(ChecksumError) as info:
        fetch.fetch_dataset("eurosat_ms", second, base_url=url, retries=1)
    message = str(info.value)
    assert f"{url}/EuroSAT_MS.zip" in message and "never matched" in message
    assert len(state.requests) == 1 + 2  # first fetch, then 2 attempts (1 retry)
    assert not (second / "eurosat_ms").exists() and not list((second / ".downloads").iterdir())


def test_missing_file_on_server_names_url_and_fix(tmp_path: Path, server: tuple[str, ServerState]) -> None:
    url, state = server
    with pytest.raises(FetchError) as info:
        fetch.fetch_dataset("eurosat_ms", tmp_path, base_url=url, retries=3)
    message = str(info.value)
    assert "HTTP 404" in message and "place it at" in message and "EuroSAT_MS.zip" in message
    assert len(state.requests) == 1, "a 404 is not retried"


def test_path_traversal_member_is_refused(tmp_path: Path, server: tuple[str, ServerState]) -> None:
    url, state = server
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("EuroSAT_MS/Forest/Forest_1.tif", b"x")
        zf.writestr("../../evil.txt", b"owned")
    state.files["EuroSAT_MS.zip"] = buffer.getvalue()
    root = tmp_path / "root"
    with pytest.raises(FetchError, match="path traversal"):
        fetch.fetch_dataset("eurosat_ms", root, base_url=url)
    assert not list(tmp_path.rglob("evil.txt"))
    assert not (root / "eurosat_ms").exists() and not (root / ".extract").exists()


def _symlink(info: tarfile.TarInfo) -> None:
    info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"


# one row per unsafe tar member: (name, how to turn it into a link, expected message)
@pytest.mark.parametrize(
    ("member", "edit", "message"),
    [
        ("../outside.txt", None, "path traversal"),  # parent escape
        ("/abs/file.txt", None, "path traversal"),  # absolute path
        ("data/link", _symlink, "link or special file"),  # symlink pointing outside
    ],
)
def test_unsafe_tar_members_are_refused(
    tmp_path: Path, member: str, edit: Callable[[tarfile.TarInfo], None] | None, message: str
) -> None:
    archive = tmp_path / "a.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        info = tarfile.TarInfo(member)
        payload = b"data"
        info.size = len(payload)
        if edit is not None:
            edit(info)
            info.size = 0
            tf.addfile(info)
        else:
            tf.addfile(info, io.BytesIO(payload))
    with pytest.raises(FetchError, match=message):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "outside.txt").exists()


def test_dubai_layout_from_a_mirror(tmp_path: Path, server: tuple[str, ServerState]) -> None:
    """Kaggle's layout (Tile <t>/{images,masks}) -> tile_<t>/... with pairs.csv; a mirror needs no login."""
    from PIL import Image

    url, state = server
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for tile, size in ((1, (6, 5)), (2, (7, 3))):
            for part in (1, 2):
                for kind, suffix, mode in (("images", "jpg", "JPEG"), ("masks", "png", "PNG")):
                    encoded = io.BytesIO()
                    Image.new("RGB", size, (60, 16, 152)).save(encoded, mode)
                    zf.writestr(
                        f"Semantic segmentation dataset/Tile {tile}/{kind}/image_part_00{part}.{suffix}",
                        encoded.getvalue(),
                    )
    state.files["semantic-segmentation-of-aerial-imagery.zip"] = buffer.getvalue()
    target = fetch.fetch_dataset("dubai_aerial_landcover", tmp_path, base_url=url)
    assert target.name == "dubai_aerial_landcover_segmentation"
    rows = (target / "pairs.csv").read_text().splitlines()
    assert rows[0] == "image,mask,tile,width,height"
    assert "tile_2/images/image_part_002.jpg,tile_2/masks/image_part_002.png,2,7,3" in rows and len(rows) == 5
    assert "1,Land (unpaved area),#8429F6,132,41,246" in (target / "classes.csv").read_text()


def test_kaggle_without_credentials_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.delenv("KAGGLE_KEY", raising=False)
    with pytest.raises(FetchError) as info:
        fetch.fetch_dataset("dubai_aerial_landcover", tmp_path)  # fails before any network access
    message = str(info.value)
    assert "KAGGLE_USERNAME" in message and "KAGGLE_KEY" in message
    assert str(tmp_path / ".downloads" / "semantic-segmentation-of-aerial-imagery.zip") in message


def test_unknown_dataset_and_half_finished_target(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="choose one of"):
        fetch.fetch_dataset("imagenet", tmp_path)
    (tmp_path / "eurosat_ms").mkdir()
    (tmp_path / "eurosat_ms" / "stray.tif").write_bytes(b"")
    with pytest.raises(FetchError, match="without a .complete marker"):
        fetch.fetch_dataset("eurosat_ms", tmp_path, base_url="http://127.0.0.1:9")


def test_every_dataset_has_a_card_and_a_source() -> None:
    from resnet_apps.cards import load_card

    for name, spec in fetch.DATASETS.items():
        assert load_card(spec["card"]).name == spec["card"]
        for entry in spec["files"]:
            assert entry["url"] is None or entry["url"].startswith("https://"), name  # no plain http
            assert entry["url"] is not None or entry.get("manual_from"), name
            assert entry["sha256"] is None or len(entry["sha256"]) == 64, name


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, payload in members.items():
            zf.writestr(name, payload)
    return buffer.getvalue()


def test_kermany_and_cloud38_layouts(tmp_path: Path, server: tuple[str, ServerState]) -> None:
    url, state = server
    state.files["ChestXRay2017.zip"] = _zip(
        {
            "chest_xray/train/NORMAL/IM-0115-0001.jpeg": b"n",
            "chest_xray/train/PNEUMONIA/person1_bacteria_1.jpeg": b"p",
            "chest_xray/test/NORMAL/IM-0001-0001.jpeg": b"n2",
            "__MACOSX/chest_xray/train/NORMAL/._IM-0115-0001.jpeg": b"junk",
        }
    )
    kermany = fetch.fetch_dataset("chest_xray_pneumonia_kermany", tmp_path, base_url=url)
    assert (kermany / "labels.csv").read_text().splitlines() == [
        "filename,label,split",
        "train/NORMAL/IM-0115-0001.jpeg,NORMAL,train",
        "train/PNEUMONIA/person1_bacteria_1.jpeg,PNEUMONIA,train",
        "test/NORMAL/IM-0001-0001.jpeg,NORMAL,test",
    ]
    assert (kermany / "test" / "NORMAL" / "IM-0001-0001.jpeg").read_bytes() == b"n2"
    patch = "patch_1_1_by_1_LC08_L1TP_011002_20160620_20170323_01_T1.TIF"
    state.files["38-Cloud.zip"] = _zip(
        {
            **{
                f"38-Cloud_training/train_{b}/{b}_{patch}": b.encode()
                for b in ("red", "green", "blue", "nir", "gt")
            },
            "38-Cloud_training/training_patches_38-Cloud.csv": b"name\n",
            f"38-Cloud_test/test_red/red_{patch}": b"t",
        }
    )
    cloud = fetch.fetch_dataset("cloud38_landsat8", tmp_path, base_url=url)
    assert cloud.name == "cloud38_landsat8_segmentation"
    assert (cloud / "train_gt" / f"gt_{patch}").read_bytes() == b"gt"
    assert (cloud / "test_red" / f"red_{patch}").read_bytes() == b"t"


def test_nih_archives_and_label_csv(tmp_path: Path, server: tuple[str, ServerState]) -> None:
    """12 image tarballs plus the CSV (which has no direct link: a mirror, or a file placed by hand)."""
    url, state = server
    for index in range(1, 13):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
            info = tarfile.TarInfo(f"images/{index:08d}_000.png")
            info.size = 3
            tf.addfile(info, io.BytesIO(b"png"))
        state.files[f"images_{index:03d}.tar.gz"] = buffer.getvalue()
    # without a mirror the CSV must be placed by hand: the error says where
    root = tmp_path / "manual"
    (root / ".downloads").mkdir(parents=True)
    for name, payload in state.files.items():
        (root / ".downloads" / name).write_bytes(payload)
    with pytest.raises(
        FetchError, match=r"Data_Entry_2017.csv has no direct download link.*nihcc.app.box.com"
    ):
        fetch.fetch_dataset("nih_chestxray14", root)
    (root / ".downloads" / "Data_Entry_2017.csv").write_text("Image Index,Finding Labels\n")
    target = fetch.fetch_dataset("nih_chestxray14", root)  # every file is local: no network at all
    assert sorted(p.name for p in (target / "images").iterdir())[:2] == [
        "00000001_000.png",
        "00000002_000.png",
    ]
    assert len(list((target / "images").iterdir())) == 12
    assert (target / "Data_Entry_2017.csv").read_text().startswith("Image Index")
    assert state.requests == []
    # files placed by hand have their sha256 recorded, as downloads do
    assert len(json.loads((root / ".checksums.json").read_text())) == 13


# --- deadlines, plain http, publisher checksums, decompression bombs (issue 11) -------------------


def test_a_dripping_server_hits_the_overall_deadline(
    tmp_path: Path, server: tuple[str, ServerState], eurosat_zip: bytes
) -> None:
    url, state = server
    state.files["EuroSAT_MS.zip"] = eurosat_zip
    state.drip["EuroSAT_MS.zip"] = 0.2  # one byte every 0.2 s: no single read ever waits 60 s
    start = time.monotonic()
    with pytest.raises(FetchError, match=r"not complete within the 1\.5 s deadline") as info:
        fetch.fetch_dataset("eurosat_ms", tmp_path, base_url=url, deadline=1.5)
    elapsed = time.monotonic() - start
    assert elapsed < 4.0, elapsed  # the deadline holds (a per-read timeout alone never fires)
    assert "--timeout" in str(info.value) and "--base-url" in str(info.value)
    part = tmp_path / ".downloads" / "EuroSAT_MS.zip.part"
    assert 0 < part.stat().st_size < 20  # what arrived is kept for the next fetch to resume
    assert not (tmp_path / "eurosat_ms").exists()


def test_cli_fetch_timeout_and_base_url(
    tmp_path: Path, server: tuple[str, ServerState], eurosat_zip: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    from resnet_apps.cli import main

    url, state = server
    state.files["EuroSAT_MS.zip"] = eurosat_zip
    state.drip["EuroSAT_MS.zip"] = 0.2
    args = ["data", "fetch", "eurosat_ms", "--root", str(tmp_path), "--base-url", url]
    assert main([*args, "--timeout", "1"]) == 2
    assert "deadline" in capsys.readouterr().err
    del state.drip["EuroSAT_MS.zip"]
    assert main(args) == 0  # resumes the .part from the mirror
    err = capsys.readouterr().err
    assert "trust on first use" in err and hashlib.sha256(eurosat_zip).hexdigest() in err
    assert (tmp_path / ".downloads" / "EuroSAT_MS.zip").read_bytes() == eurosat_zip


def test_plain_http_is_refused_unless_allowed(tmp_path: Path, server: tuple[str, ServerState]) -> None:
    # refused before any connection: the address below does not exist
    with pytest.raises(FetchError, match=r"plain http://.*--allow-insecure"):
        fetch.fetch_dataset("eurosat_ms", tmp_path, base_url="http://mirror.invalid/data")
    url, state = server
    # an https (here: loopback) URL redirected to plain http elsewhere is refused too
    state.redirect["EuroSAT_MS.zip"] = "http://mirror.invalid/EuroSAT_MS.zip"
    with pytest.raises(FetchError, match=r"redirected to http://mirror.invalid/EuroSAT_MS.zip"):
        fetch.fetch_dataset("eurosat_ms", tmp_path, base_url=url, retries=0)


def test_publisher_md5_is_checked_and_said(
    tmp_path: Path, server: tuple[str, ServerState], eurosat_zip: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, state = server
    state.files["EuroSAT_MS.zip"] = eurosat_zip
    entry = fetch.DATASETS["eurosat_ms"]["files"][0]
    lines: list[str] = []
    monkeypatch.setitem(entry, "md5", "0" * 32)  # the publisher says otherwise: not this file
    with pytest.raises(ChecksumError, match="publisher's"):
        fetch.fetch_dataset("eurosat_ms", tmp_path / "bad", base_url=url, retries=1, log=lines.append)
    assert not (tmp_path / "bad" / ".checksums.json").exists()  # nothing pinned
    monkeypatch.setitem(entry, "md5", hashlib.md5(eurosat_zip).hexdigest())
    fetch.fetch_dataset("eurosat_ms", tmp_path / "good", base_url=url, log=lines.append)
    assert (
        len(lines) == 1 and "matches the publisher's md5" in lines[0] and "trust on first use" not in lines[0]
    )


def test_real_eurosat_entries_carry_the_publishers_md5() -> None:
    text = Path(fetch.__file__).read_text()  # the autouse fixture cleared them in DATASETS: read the source
    for md5 in ("091174add3c8e680a49244acf185b9f0", "f46e308c4d50d4bf32fedad2d3d62f3b"):  # Zenodo's MS, RGB
        assert f'"md5": "{md5}"' in text


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_decompression_bomb_is_refused_before_writing(tmp_path: Path, kind: str) -> None:
    from resnet_apps.errors import ArchiveTooLargeError

    zeros = bytes(32 << 20)  # 32 MiB of zeros compress about 1000x
    archive = tmp_path / f"bomb.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("data/zeros.bin", zeros)
    else:
        with tarfile.open(archive, "w:gz") as tf:
            info = tarfile.TarInfo("data/zeros.bin")
            info.size = len(zeros)
            tf.addfile(info, io.BytesIO(zeros))
    assert archive.stat().st_size < 200_000
    with pytest.raises(ArchiveTooLargeError, match=r"bomb\.(zip|tar\.gz): expands to more than .*100x"):
        safe_extract(archive, tmp_path / "out")
    assert not any(p.is_file() for p in (tmp_path / "out").rglob("*"))
    # the cap is a parameter: a trusted archive may be extracted with a looser one
    safe_extract(archive, tmp_path / "trusted", max_ratio=10_000)
    assert (tmp_path / "trusted" / "data" / "zeros.bin").stat().st_size == len(zeros)


def test_written_bytes_are_counted_too(tmp_path: Path) -> None:
    from resnet_apps.errors import ArchiveTooLargeError
    from resnet_apps.fetch.layout import _Budget

    archive = tmp_path / "a.bin"
    archive.write_bytes(b"x" * 10)
    budget = _Budget(archive, max_bytes=1 << 30, max_ratio=100.0)  # 1 000 bytes
    with pytest.raises(ArchiveTooLargeError):
        budget.copy(io.BytesIO(bytes(2000)), io.BytesIO(), "member")  # more than its header declared
