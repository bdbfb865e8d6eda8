"""Images stored in one NumPy ``.npz`` archive (the MedMNIST layout), addressed as ``file.npz#split/index``.

MedMNIST ships each dataset as ``<name>.npz`` with ``train_images`` [N, H, W] (or [N, H, W, C]) uint8 and
``train_labels`` [N, 1], likewise ``val_*`` and ``test_*``. Source kind ``npz`` (``data.source.index`` names
the archive, relative to ``data.root``) indexes one record per image, its split taken from the key; the
record's path ``<index>#<split>/<i>`` is what ids, split.json and the reports see. The arrays are loaded
once per process (``np.load`` without pickle) and kept: MedMNIST archives are a few MB.
No torch here.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from resnet_apps.errors import DatasetError, ImageReadError

SEPARATOR = "#"
SPLITS = ("train", "val", "test")


def npz_member(path: str) -> tuple[str, str, int] | None:
    """``"a/b.npz#train/17"`` -> ``("a/b.npz", "train", 17)``; None for a plain file path."""
    if SEPARATOR not in path:
        return None
    file, _, member = path.rpartition(SEPARATOR)
    split, _, index = member.partition("/")
    if not file.endswith(".npz") or split not in SPLITS or not index.isdigit():
        return None
    return file, split, int(index)


def cache_identity(path: str) -> tuple[str, dict[str, str]]:
    """(the file a record's pixels come from, extra cache-key params): an archive member is keyed by the
    archive's content plus its member name; a plain path by itself (no extra params, so keys are unchanged)."""
    member = npz_member(path)
    if member is None:
        return path, {}
    return member[0], {"npz_member": path.rpartition(SEPARATOR)[2]}


@functools.lru_cache(maxsize=4)
def _arrays(path: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: np.asarray(archive[key]) for key in archive.files}
    except (OSError, ValueError) as error:
        raise ImageReadError(
            f"{path}: not a readable .npz archive ({error}); check data.source.index"
        ) from error


def npz_labels(path: Path) -> dict[str, np.ndarray]:
    """``{split: labels [N] int}`` for each split whose ``<split>_images`` and ``<split>_labels`` are stored.

    Raises:
        DatasetError: no split found, a labels array that is not one integer per image, or a count mismatch.
    """
    arrays = _arrays(str(path))
    out = {}
    for split in SPLITS:
        images, labels = arrays.get(f"{split}_images"), arrays.get(f"{split}_labels")
        if images is None or labels is None:
            continue
        flat = np.asarray(labels).reshape(len(labels), -1)
        if flat.shape[1] != 1 or len(flat) != len(images):
            raise DatasetError(
                f"{path}: {split}_labels is {list(np.shape(labels))} for {len(images)} images; source kind npz "
                "needs one class index per image ([N] or [N, 1])"
            )
        out[split] = flat[:, 0].astype(np.int64)
    if not out:
        raise DatasetError(
            f"{path}: no <split>_images / <split>_labels pair (train, val, test) in {sorted(arrays)}; "
            "source kind npz reads the MedMNIST layout"
        )
    return out


def npz_image(path: Path, split: str, index: int) -> np.ndarray:
    """Image ``index`` of ``<split>_images`` as [C, H, W] (a [N, H, W] archive gives C = 1)."""
    images = _arrays(str(path)).get(f"{split}_images")
    if images is None or not 0 <= index < len(images):
        raise ImageReadError(f"{path}: no image {split}/{index}; the index was built from another archive")
    image = np.asarray(images[index])
    return image[None] if image.ndim == 2 else np.moveaxis(image, -1, 0)
