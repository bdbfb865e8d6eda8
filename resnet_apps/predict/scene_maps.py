"""The output maps of a scene prediction: class (and probability) COG writers, encoding and block writes.

:func:`open_maps` opens ``<stem>_class.tif`` (uint8/uint16 classes with a colour table and class names, MODE
overviews) and, when asked, ``<stem>_prob.tif`` (float32 with NaN nodata, or uint8 0..254 = 0..1 with 255
nodata; AVERAGE overviews) on the scene's grid or one ``scale`` times coarser; :func:`write_block` writes one
block's probabilities as classes at the checkpoint's operating point (and as probabilities), nodata where
the scene was not valid. The writers write to temporary files and rename them only when closed without an
exception (``io.open_geotiff_writer``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from resnet_apps.io import GeoTiffWriter, open_geotiff_writer
from resnet_apps.io.geotiff import source_stem
from resnet_apps.models.decision import Decision
from resnet_apps.predict.raster import SceneReader, class_dtype

PROBABILITY_FORMATS = (None, "float32", "uint8")
MapWriters = tuple[GeoTiffWriter, "GeoTiffWriter | None"]


def probabilities_to_classes(prob: np.ndarray, decision: Decision) -> np.ndarray:
    """[K, ...] probabilities -> class indexes [...] at the checkpoint's operating point.

    One output: class 1 where p >= threshold. Two classes: the positive class where its probability
    reaches the threshold. More: the most probable class.
    """
    if prob.shape[0] == 1:
        return (prob[0] >= decision.threshold).astype(np.int64)
    if decision.binary:
        positive = prob[decision.positive_index] >= decision.threshold
        return np.where(positive, decision.positive_index, 1 - decision.positive_index)
    return prob.argmax(axis=0)


def open_maps(
    reader: SceneReader,
    out_stem: Path,
    scale: int,
    probabilities: str | None,
    decision: Decision,
    tags: Mapping[str, str] | None,
) -> tuple[GeoTiffWriter, GeoTiffWriter | None]:
    """Class (and probability) COG writers (``<out_stem>_class.tif``, ``_prob.tif``) on the scene's grid,
    or one ``scale`` times coarser; ``tags`` (and the source, for a URL) as GeoTIFF metadata."""
    tags = dict(tags or {})
    if reader.remote:
        tags.setdefault("SOURCE_URL", str(reader.path))
    like = reader.output_like(scale)
    dtype, nodata = class_dtype(len(decision.classes))
    cls = open_geotiff_writer(
        out_stem.with_name(f"{out_stem.name}_class.tif"),
        like=like,
        count=1,
        dtype=dtype,
        nodata=nodata,
        band_names=["class"],
        legend=list(decision.classes),
        tags=tags,
    )
    prob = None
    if probabilities:
        names = decision.columns()
        prob = open_geotiff_writer(
            out_stem.with_name(f"{out_stem.name}_prob.tif"),
            like=like,
            count=len(names),
            dtype=probabilities,
            nodata=float("nan") if probabilities == "float32" else 255,
            band_names=names,
            overview_resampling="AVERAGE",  # nodata-aware mean probability; cubic would leave [0, 1]
            colour_bands=False,  # 3 or 4 classes are not red, green, blue (alpha)
            tags=tags,
        )
    return cls, prob


def scene_stem(path: str | Path) -> str:
    """Output name stem of a scene: its name without the last suffix (``scene.v1.tif`` -> ``scene.v1``).

    The whole stem, so that ``scene.v1.tif`` and ``scene.v2.tif`` never write the same ``_class.tif``;
    a URL's stem is its path's (``https://host/a/scene.tif?sig=...`` -> ``scene``).
    """
    return source_stem(path)


def encode_probabilities(prob: np.ndarray, fmt: str, valid: np.ndarray) -> np.ndarray:
    """[K, h, w] float -> the stored probability array with nodata where not valid."""
    if fmt == "uint8":
        out = np.rint(prob * 254.0).astype(np.uint8)
        out[:, ~valid] = 255
        return out
    out = prob.astype(np.float32, copy=True)
    out[:, ~valid] = np.nan
    return out


def io_window(span: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """``(row0, row1, col0, col1)`` -> the io writer's ``(row_off, col_off, height, width)``."""
    r0, r1, c0, c1 = span
    return r0, c0, r1 - r0, c1 - c0


def write_block(
    writers: tuple[GeoTiffWriter, GeoTiffWriter | None],
    prob: np.ndarray,
    valid: np.ndarray,
    span: tuple[int, int, int, int],
    decision: Decision,
) -> None:
    """Write classes (nodata where not valid) and, if asked, probabilities [K, h, w] at ``span``."""
    cls_writer, prob_writer = writers
    classes = probabilities_to_classes(prob, decision).astype(cls_writer.dtype)
    classes[~valid] = cls_writer.nodata
    cls_writer.write(classes[None], io_window(span))
    if prob_writer is not None:
        prob_writer.write(encode_probabilities(prob, prob_writer.dtype.name, valid), io_window(span))
