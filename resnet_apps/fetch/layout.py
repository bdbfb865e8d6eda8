"""Safe archive extraction and the per-dataset layouts the recipes expect (stdlib; PIL only for Dubai sizes).

Each layout function takes the folder an archive was extracted into and the dataset's target folder, and
moves the files into the shape of the copy in ``../shared/data`` (so a recipe's ``data.root`` can point at
either), writing the index CSV the recipe reads.
"""

from __future__ import annotations

import csv
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import IO

from resnet_apps.errors import ArchiveTooLargeError, FetchError

# Caps on what an archive may expand to. The real datasets expand 1-3x (images are compressed already);
# a decompression bomb expands 1000x (the probe's 1 MB zip wrote 1 GiB).
MAX_RATIO = 100.0  # expanded bytes / archive bytes
MAX_EXPANDED_BYTES = 256 << 30  # 256 GiB in one archive (the largest real one, 38-Cloud, is ~12 GB)

EUROSAT_CLASSES = (
    "AnnualCrop",
    "Forest",
    "HerbaceousVegetation",
    "Highway",
    "Industrial",
    "Pasture",
    "PermanentCrop",
    "Residential",
    "River",
    "SeaLake",
)


def _check_member(name: str, archive: Path) -> PurePosixPath:
    """Refuse absolute paths, drive letters and '..' components (path traversal)."""
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or (pure.parts and ":" in pure.parts[0]) or ".." in pure.parts:
        raise FetchError(
            f"{archive}: member {name!r} would be written outside the extraction folder (path traversal); "
            "the archive is not the official one: delete it and download it again from the source"
        )
    return pure


def _target(base: Path, name: str, archive: Path) -> Path:
    """Where a member goes; refuses any member whose resolved path leaves ``base``."""
    target = (base / _check_member(name, archive)).resolve()
    if not target.is_relative_to(base):
        raise FetchError(f"{archive}: member {name!r} escapes {base}; refusing it")
    return target


class _Budget:
    """Bytes an archive may still expand to; checked on the declared sizes first, then on what is written."""

    def __init__(self, archive: Path, max_bytes: int, max_ratio: float) -> None:
        self.archive = archive
        self.limit = int(min(max_bytes, max_ratio * max(archive.stat().st_size, 1)))
        self.max_bytes, self.max_ratio, self.used = max_bytes, max_ratio, 0

    def refuse(self, size: int, member: str) -> ArchiveTooLargeError:
        return ArchiveTooLargeError(
            f"{self.archive}: expands to more than {self.limit:,} bytes (at {member!r}: {size:,} bytes so "
            f"far from a {self.archive.stat().st_size:,}-byte archive; caps: {self.max_ratio:g}x its size, "
            f"{self.max_bytes:,} bytes at most); a decompression bomb or not the official archive: delete "
            "it and download it again from the source"
        )

    def declare(self, sizes: Iterable[tuple[str, int]]) -> None:
        total = 0
        for member, size in sizes:
            total += size
            if total > self.limit:
                raise self.refuse(total, member)

    def copy(self, src: IO[bytes], out: IO[bytes], member: str) -> None:
        """Copy like shutil.copyfileobj, counting bytes (a member may hold more than its header says)."""
        while block := src.read(1 << 20):
            self.used += len(block)
            if self.used > self.limit:
                raise self.refuse(self.used, member)
            out.write(block)


def _extract_zip(archive: Path, base: Path, budget: _Budget) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:  # check every member before writing any
            _target(base, info.filename, archive)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise FetchError(f"{archive}: member {info.filename!r} is a symbolic link; refusing it")
        budget.declare((i.filename, i.file_size) for i in infos)
        for info in infos:
            path = _target(base, info.filename, archive)
            if info.is_dir():
                path.mkdir(parents=True, exist_ok=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, path.open("wb") as out:
                budget.copy(src, out, info.filename)


def _extract_tar(archive: Path, base: Path, budget: _Budget) -> None:
    with tarfile.open(archive) as tf:
        members = tf.getmembers()
        for member in members:  # check every member before writing any
            _target(base, member.name, archive)
            if not (member.isfile() or member.isdir()):
                raise FetchError(f"{archive}: member {member.name!r} is a link or special file; refusing it")
        budget.declare((m.name, m.size) for m in members if m.isfile())
        for member in members:
            path = _target(base, member.name, archive)
            if member.isdir():
                path.mkdir(parents=True, exist_ok=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            src = tf.extractfile(member)
            if src is None:  # cannot happen for a regular file; checked above
                raise FetchError(f"{archive}: member {member.name!r} has no data; download it again")
            with src, path.open("wb") as out:
                budget.copy(src, out, member.name)


def safe_extract(
    archive: Path, dest: Path, max_bytes: int = MAX_EXPANDED_BYTES, max_ratio: float = MAX_RATIO
) -> None:
    """Extract a .zip or .tar(.gz) into ``dest``, refusing traversal, links, special files and bombs.

    Every member is checked before any is written, so a refused archive leaves nothing behind; the sizes
    the members declare are checked against the caps before any write, and the bytes really written
    are counted too (the caller removes ``dest`` when a member turns out larger than it said).

    Args:
        max_bytes: most bytes the archive may expand to.
        max_ratio: most expanded bytes per archive byte.

    Raises:
        ArchiveTooLargeError: the archive would expand beyond a cap.
        FetchError: an unsafe member or an unreadable archive (names the archive, the member and the fix).
    """
    dest.mkdir(parents=True, exist_ok=True)
    base = dest.resolve()
    budget = _Budget(archive, max_bytes, max_ratio)
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, base, budget)
        elif tarfile.is_tarfile(archive):
            _extract_tar(archive, base, budget)
        else:
            raise FetchError(f"{archive}: neither a zip nor a tar archive; delete it and download it again")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as error:
        raise FetchError(f"{archive}: corrupt archive ({error}); delete it and download it again") from error


def _visible(paths: Iterable[Path]) -> list[Path]:
    # macOS zips carry __MACOSX/ and ._* resource forks beside the real files
    return sorted(p for p in paths if "__MACOSX" not in p.parts and not p.name.startswith("._"))


def _find_dir_with(extracted: Path, children: Iterable[str], what: str) -> Path:
    """The first folder (shallowest) under ``extracted`` that holds all ``children`` as sub-folders."""
    wanted = set(children)
    candidates = [extracted, *_visible(p for p in extracted.rglob("*") if p.is_dir())]
    for folder in sorted(candidates, key=lambda p: len(p.parts)):
        if wanted <= {c.name for c in folder.iterdir() if c.is_dir()}:
            return folder
    raise FetchError(
        f"{extracted}: no folder holding {sorted(wanted)} found in the archive ({what}); the archive layout "
        "differs from the official one: check the download"
    )


def _move(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(src), str(dst))


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def _layout_class_folders(extracted: Path, target: Path, suffix: str) -> None:
    source = _find_dir_with(extracted, EUROSAT_CLASSES, "EuroSAT class folders")
    rows: list[list[object]] = []
    for name in EUROSAT_CLASSES:
        for path in _visible((source / name).glob(f"*{suffix}")):
            _move(path, target / name / path.name)
            rows.append([f"{name}/{path.name}", name])
    if not rows:
        raise FetchError(f"{source}: the class folders hold no *{suffix} files; check the download")
    _write_csv(target / "labels.csv", ["filename", "label"], rows)


def layout_eurosat_ms(extracted: Path, target: Path) -> None:
    """``EuroSAT_MS/<Class>/*.tif`` (any depth) -> ``target/<Class>/*.tif`` + labels.csv (filename, label)."""
    _layout_class_folders(extracted, target, ".tif")


def layout_eurosat_rgb(extracted: Path, target: Path) -> None:
    """``EuroSAT_RGB/<Class>/*.jpg`` or ``2750/<Class>/*.jpg`` -> ``target/<Class>/*.jpg`` + labels.csv."""
    _layout_class_folders(extracted, target, ".jpg")


def layout_kermany(extracted: Path, target: Path) -> None:
    """``chest_xray/{train,test[,val]}/{NORMAL,PNEUMONIA}/*.jpeg`` -> same under target + labels.csv."""
    source = _find_dir_with(extracted, ("train", "test"), "Kermany train/test folders")
    rows: list[list[object]] = []
    for split in ("train", "val", "test"):
        for label in ("NORMAL", "PNEUMONIA"):
            for path in _visible((source / split / label).glob("*.jpeg")):
                _move(path, target / split / label / path.name)
                rows.append([f"{split}/{label}/{path.name}", label, split])
    if not rows:
        raise FetchError(f"{source}: no {{train,test}}/{{NORMAL,PNEUMONIA}}/*.jpeg files; check the download")
    _write_csv(target / "labels.csv", ["filename", "label", "split"], rows)


def layout_nih(extracted: Path, target: Path) -> None:
    """``images/*.png`` from the 12 archives and ``Data_Entry_2017.csv`` -> ``target/images/`` + the CSV."""
    pngs = _visible(extracted.rglob("*.png"))
    if not pngs:
        raise FetchError(f"{extracted}: no PNG images in the NIH archives; check the downloads")
    for path in pngs:
        _move(path, target / "images" / path.name)
    entries = _visible(extracted.rglob("Data_Entry_2017*.csv"))
    if entries:
        _move(entries[0], target / "Data_Entry_2017.csv")


def layout_cloud38(extracted: Path, target: Path) -> None:
    """``38-Cloud_training/train_{red,green,blue,nir,gt}`` (and test_* folders) -> ``target/<folder>``."""
    source = _find_dir_with(extracted, ("train_red", "train_gt"), "38-Cloud training folders")
    for folder in _visible(source.iterdir()):
        _move(folder, target / folder.name)
    tests = [p for p in _visible(extracted.rglob("test_red")) if p.is_dir()]
    if tests:
        for folder in _visible(tests[0].parent.iterdir()):
            if not (target / folder.name).exists():
                _move(folder, target / folder.name)


def layout_dubai(extracted: Path, target: Path) -> None:
    """``Tile <t>/{images,masks}/image_part_00<n>.*`` -> ``tile_<t>/...`` + pairs.csv and classes.csv."""
    from PIL import Image

    tiles = sorted(
        (p for p in _visible(extracted.rglob("Tile *")) if p.is_dir()),
        key=lambda p: int(p.name.split()[-1]) if p.name.split()[-1].isdigit() else 0,
    )
    if not tiles:
        raise FetchError(f"{extracted}: no 'Tile <n>' folders in the Kaggle archive; check the download")
    rows: list[list[object]] = []
    for tile in tiles:
        number = tile.name.split()[-1]
        for image in _visible((tile / "images").glob("*.jpg")):
            mask = tile / "masks" / (image.stem + ".png")
            if not mask.is_file():
                raise FetchError(f"{image}: no mask {mask.name} beside it in the archive; check the download")
            new_image = target / f"tile_{number}" / "images" / image.name
            new_mask = target / f"tile_{number}" / "masks" / mask.name
            _move(image, new_image)
            _move(mask, new_mask)
            with Image.open(new_image) as opened:
                width, height = opened.size
            rows.append(
                [
                    f"tile_{number}/images/{image.name}",
                    f"tile_{number}/masks/{mask.name}",
                    int(number),
                    width,
                    height,
                ]
            )
    _write_csv(target / "pairs.csv", ["image", "mask", "tile", "width", "height"], rows)
    _write_csv(
        target / "classes.csv",
        ["class_index", "class_name", "hex", "r", "g", "b"],
        [
            [i, name, colour, int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)]
            for i, (name, colour) in enumerate(
                [
                    ("Building", "#3C1098"),
                    ("Land (unpaved area)", "#8429F6"),
                    ("Road", "#6EC1E4"),
                    ("Vegetation", "#FEDD3A"),
                    ("Water", "#E2A929"),
                    ("Unlabeled", "#9B9B9B"),
                ]
            )
        ],
    )
