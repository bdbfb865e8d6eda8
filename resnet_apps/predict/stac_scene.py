"""Predict one STAC item as a scene: stack its assets (``predict.stac``), predict the stack, record provenance.

The VRT lives in a temporary folder for the duration of the prediction; the maps are
``OUT/<item id>_class.tif`` (+ ``_prob.tif``) and carry the item id, item href and asset hrefs as GeoTIFF
metadata; the returned summary carries them too (``stac``), beside ``predict_scene``'s figures.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pystac
from torch import nn

from resnet_apps.errors import StacError
from resnet_apps.io.geotiff import is_remote
from resnet_apps.models.meta import CheckpointMeta
from resnet_apps.predict.scene import predict_scene
from resnet_apps.predict.stac import Resampling, build_vrt, read_item


def checkpoint_resolution(meta: CheckpointMeta | Mapping[str, Any]) -> float | None:
    """The ground resolution a checkpoint records (``ground_resolution``, CRS units per pixel), else None."""
    value = meta.get("ground_resolution")
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def predict_item(
    model: nn.Module,
    meta: CheckpointMeta | Mapping[str, Any],
    item: pystac.Item | str,
    out_dir: str | Path,
    *,
    resolution: float | None = None,
    resampling: Resampling = "nearest",
    **scene_options: Any,
) -> dict[str, Any]:
    """Predict a STAC item (an Item or its path / URL) into ``out_dir``.

    Args:
        model: as for :func:`~resnet_apps.predict.scene.predict_scene`.
        meta: checkpoint metadata; its ``preprocessing.bands`` name the assets to stack.
        item: the item, or where to read it.
        out_dir: output folder.
        resolution: grid resolution; None: the checkpoint's ``ground_resolution``, else the finest asset's.
        resampling: GDAL resampling onto the grid.
        **scene_options: passed to ``predict_scene`` (tile, overlap, block, batch_size, device, window, ...).

    Returns:
        ``predict_scene``'s summary plus ``stac``: ``{"item_id", "item_href", "assets": {band: href},
        "resolution"}``.
    """
    checked = CheckpointMeta.coerce(meta)
    item = read_item(item) if isinstance(item, str) else item
    bands = checked.require_preprocessing().bands
    if not bands:
        raise StacError(
            f"{item.get_self_href() or item.id}: the checkpoint records no band names (preprocessing.bands), "
            "so the item's assets cannot be chosen; fix: train with named bands (data.bands), or stack the "
            "assets into one GeoTIFF yourself"
        )
    resolution = resolution or checkpoint_resolution(checked)
    with tempfile.TemporaryDirectory(prefix="resnet_apps_stac_") as tmp:
        stacked = build_vrt(
            item, [str(b) for b in bands], Path(tmp) / f"{item.id}.vrt", resolution, resampling
        )
        remote = any(is_remote(b.href) for b in stacked.bands)  # fetched bytes counted, reads retried
        result = predict_scene(
            model,
            checked,
            stacked.vrt,
            out_dir,
            name=item.id,
            tags=stacked.tags,
            remote=remote,
            **scene_options,
        )
    result["source"] = stacked.item_href or item.id
    result["stac"] = {**stacked.provenance(), "resolution": stacked.resolution}
    return result
