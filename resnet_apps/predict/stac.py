"""STAC items to scenes: the assets a checkpoint's bands need, stacked onto one grid by a GDAL VRT.

``predict RUN item.json`` (a path or URL of a STAC Item) and ``predict RUN --stac API --collection C
--bbox W,S,E,N --datetime ...`` (a STAC API search, pystac-client) predict each item as one scene:

1. :func:`resolve_assets`: each band name of the checkpoint (``preprocessing.bands``, e.g. ``B04``) is
   looked up among the item's assets, first by band name or asset key, then by common name (``red``;
   Sentinel-2 ``Bnn`` names know their common names, :data:`S2_COMMON_NAMES`), reading the eo extension
   (``eo:bands``) through pystac and STAC 1.1 ``bands`` (``name``, ``eo:common_name``); single-band assets
   win over multi-band ones (a ``visual`` RGB asset also says ``red``).
2. :func:`build_vrt`: one VRT band per checkpoint band, each a GDAL source of its asset (a URL read through
   ``/vsicurl/``: only the blocks predicted are fetched) placed on one grid: the assets' union extent at
   the checkpoint's ground resolution (``ground_resolution`` in its metadata) when it records one, else the
   finest asset's. GDAL resamples coarser assets (nearest by default: a 20 m pixel becomes 2 x 2 equal
   10 m pixels); no resampler of ours.
3. The VRT is predicted like any scene; the maps carry ``STAC_ITEM_ID``, ``STAC_ITEM_HREF`` and
   ``STAC_ASSETS`` (band -> href, JSON) as GeoTIFF metadata, and the predict result the same fields.

:func:`stac_search_entries` turns a search into item hrefs, the entries of a scene manifest.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from xml.etree import ElementTree as ET

import numpy as np
import pystac
import rasterio
from pystac.extensions.eo import EOExtension

from resnet_apps.errors import StacError
from resnet_apps.io.geotiff import is_remote
from resnet_apps.predict.remote import gdal_env, vsi_path

Resampling = Literal["nearest", "bilinear", "cubic", "average"]
# Sentinel-2 band names -> STAC common names (a checkpoint trained on EuroSAT's B04 finds a "red" asset)
S2_COMMON_NAMES = {
    "B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge071", "B06": "rededge075",
    "B07": "rededge078", "B08": "nir", "B8A": "nir08", "B09": "nir09", "B10": "cirrus", "B11": "swir16",
    "B12": "swir22",
}  # fmt: skip
_GDAL_TYPES = {
    "uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32", "int32": "Int32",
    "float32": "Float32", "float64": "Float64",
}  # fmt: skip


@dataclass(frozen=True)
class AssetBand:
    """Where one checkpoint band comes from: an asset's href and the 1-based band within it."""

    band: str
    asset_key: str
    href: str
    index: int = 1


@dataclass
class StackedItem:
    """A STAC item as one scene: the VRT that stacks its assets, and where each band came from."""

    item_id: str
    item_href: str | None
    vrt: Path
    bands: list[AssetBand]
    resolution: float
    tags: dict[str, str] = field(default_factory=dict)

    def provenance(self) -> dict[str, Any]:
        """Item id, item href and band -> asset href, for the predict result."""
        return {
            "item_id": self.item_id,
            "item_href": self.item_href,
            "assets": {b.band: b.href for b in self.bands},
        }


def is_stac_item(source: str) -> bool:
    """A ``.json`` path or URL (query dropped) is taken as a STAC Item."""
    return source.split("?", 1)[0].lower().endswith(".json")


def read_item(source: str) -> pystac.Item:
    """A STAC Item from a local path or URL (pystac's reader)."""
    try:
        item = pystac.Item.from_file(source)
    except Exception as error:  # pystac raises many kinds (JSON, HTTP, schema): one typed error here
        raise StacError(
            f"{source}: not a readable STAC Item ({type(error).__name__}: {error}); fix: give the path or URL "
            "of an Item JSON (type: Feature)"
        ) from error
    if not item.get_self_href():
        item.set_self_href(source if is_remote(source) else str(Path(source).resolve()))
    return item


def _asset_band_names(item: pystac.Item, asset: pystac.Asset) -> list[tuple[str | None, str | None]]:
    """(name, common name) per band of an asset: eo:bands (pystac's eo extension), else STAC 1.1 ``bands``."""
    if EOExtension.has_extension(item):
        bands = EOExtension.ext(asset).bands
        if bands:
            return [(b.name, b.common_name) for b in bands]
    raw = asset.extra_fields.get("bands")  # STAC 1.1 common metadata; pystac 1.x keeps it as an extra field
    if isinstance(raw, list) and raw:
        return [(b.get("name"), b.get("eo:common_name") or b.get("common_name")) for b in raw]
    return []


def resolve_assets(item: pystac.Item, bands: Sequence[str]) -> list[AssetBand]:
    """The asset (and band within it) of each wanted band name, in the order asked.

    Raises:
        StacError: a band no asset provides (the error lists what the item offers).
    """
    exact: dict[str, list[tuple[int, AssetBand]]] = {}
    common: dict[str, list[tuple[int, AssetBand]]] = {}
    for key, asset in item.assets.items():
        if asset.roles and "data" not in asset.roles:
            continue  # thumbnails, overviews, metadata
        named = _asset_band_names(item, asset)
        href = asset.get_absolute_href() or asset.href
        count = max(len(named), 1)
        for i, (name, common_name) in enumerate(named or [(None, None)], start=1):
            found = AssetBand(band="", asset_key=key, href=href, index=i)
            for label in {key.lower(), (name or "").lower()} - {""}:
                if count == 1 or label != key.lower():  # a multi-band asset's key names no single band
                    exact.setdefault(label, []).append((count, found))
            if common_name:
                common.setdefault(common_name.lower(), []).append((count, found))
    chosen: list[AssetBand] = []
    for band in bands:
        wanted = str(band)
        alias = S2_COMMON_NAMES.get(wanted.upper(), "")
        candidates = exact.get(wanted.lower()) or common.get(wanted.lower()) or common.get(alias) or []
        if not candidates:
            offered = sorted(set(exact) | set(common))
            raise StacError(
                f"{item.get_self_href() or item.id}: no data asset gives band {wanted!r} (looked at asset keys, "
                f"eo:bands / bands names and common names{f', and {alias!r}' if alias else ''}); the item offers "
                f"{offered}; fix: predict with a checkpoint trained on these bands, or an item that has them"
            )
        best = min(candidates, key=lambda c: c[0])[1]  # single-band assets first
        chosen.append(AssetBand(band=wanted, asset_key=best.asset_key, href=best.href, index=best.index))
    return chosen


@dataclass(frozen=True)
class _Grid:
    crs: str
    left: float
    top: float
    res: float
    width: int
    height: int


def _open_facts(hrefs: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Header facts of each asset (one small read per URL: GDAL fetches the TIFF header only)."""
    facts: dict[str, dict[str, Any]] = {}
    with gdal_env():
        for href in dict.fromkeys(hrefs):
            try:
                with rasterio.open(href) as src:
                    t = src.transform
                    if t.b != 0 or t.d != 0:
                        raise StacError(f"{href}: a rotated grid; fix: use north-up assets")
                    facts[href] = {
                        "crs": src.crs.to_wkt() if src.crs else None,
                        "transform": t,
                        "width": src.width,
                        "height": src.height,
                        "dtypes": src.dtypes,
                        "nodata": src.nodatavals,
                        "block": src.block_shapes[0],
                    }
            except rasterio.errors.RasterioIOError as error:
                raise StacError(
                    f"{href}: asset cannot be opened ({error}); fix: check the href is reachable"
                ) from error
    return facts


def _grid(facts: dict[str, dict[str, Any]], resolution: float | None, where: str) -> _Grid:
    crs = {f["crs"] for f in facts.values()}
    if len(crs) != 1 or None in crs:
        raise StacError(
            f"{where}: the assets are in {len(crs)} CRSs (or none); fix: use one item's assets in one CRS"
        )
    res = resolution or min(min(abs(f["transform"].a), abs(f["transform"].e)) for f in facts.values())
    left = min(f["transform"].c for f in facts.values())
    top = max(f["transform"].f for f in facts.values())
    right = max(f["transform"].c + f["transform"].a * f["width"] for f in facts.values())
    bottom = min(f["transform"].f + f["transform"].e * f["height"] for f in facts.values())
    width, height = int(round((right - left) / res)), int(round((top - bottom) / res))
    return _Grid(crs.pop(), left, top, float(res), width, height)


def build_vrt(
    item: pystac.Item,
    bands: Sequence[str],
    dest: Path,
    resolution: float | None = None,
    resampling: Resampling = "nearest",
) -> StackedItem:
    """Write a VRT at ``dest`` stacking the assets of ``bands`` onto one grid (see the module docstring).

    Args:
        item: the STAC item.
        bands: the checkpoint's band names, in model channel order.
        dest: the VRT file to write.
        resolution: ground resolution of the grid in CRS units; None: the finest asset's.
        resampling: GDAL's resampling of coarser (or finer) assets onto the grid.
    """
    chosen = resolve_assets(item, bands)
    facts = _open_facts([b.href for b in chosen])
    grid = _grid(facts, resolution, item.get_self_href() or item.id)
    dtypes = [facts[b.href]["dtypes"][b.index - 1] for b in chosen]
    dtype = str(np.result_type(*dtypes))
    root = ET.Element("VRTDataset", rasterXSize=str(grid.width), rasterYSize=str(grid.height))
    ET.SubElement(root, "SRS").text = grid.crs
    ET.SubElement(root, "GeoTransform").text = f"{grid.left}, {grid.res}, 0, {grid.top}, 0, {-grid.res}"
    for n, band in enumerate(chosen, start=1):
        fact = facts[band.href]
        t = fact["transform"]
        node = ET.SubElement(root, "VRTRasterBand", dataType=_GDAL_TYPES[dtype], band=str(n))
        ET.SubElement(node, "Description").text = band.band
        nodata = fact["nodata"][band.index - 1]
        if nodata is not None:
            ET.SubElement(node, "NoDataValue").text = repr(float(nodata))
        source = ET.SubElement(node, "ComplexSource", resampling=resampling)
        href = vsi_path(band.href) if is_remote(band.href) else str(Path(band.href).resolve())
        ET.SubElement(source, "SourceFilename", relativeToVRT="0").text = href
        ET.SubElement(source, "SourceBand").text = str(band.index)
        by, bx = fact["block"]
        ET.SubElement(
            source,
            "SourceProperties",
            RasterXSize=str(fact["width"]),
            RasterYSize=str(fact["height"]),
            DataType=_GDAL_TYPES[str(dtypes[n - 1])],
            BlockXSize=str(bx),
            BlockYSize=str(by),
        )
        ET.SubElement(
            source, "SrcRect", xOff="0", yOff="0", xSize=str(fact["width"]), ySize=str(fact["height"])
        )
        ET.SubElement(
            source,
            "DstRect",
            xOff=repr((t.c - grid.left) / grid.res),
            yOff=repr((grid.top - t.f) / grid.res),
            xSize=repr(fact["width"] * t.a / grid.res),
            ySize=repr(fact["height"] * -t.e / grid.res),
        )
        if nodata is not None:
            ET.SubElement(source, "NODATA").text = repr(float(nodata))
    dest.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(dest, encoding="utf-8")
    stacked = StackedItem(item.id, item.get_self_href(), dest, chosen, grid.res)
    stacked.tags = {
        "STAC_ITEM_ID": item.id,
        "STAC_ITEM_HREF": item.get_self_href() or "",
        "STAC_ASSETS": json.dumps({b.band: b.href for b in chosen}),
    }
    return stacked


def search_items(
    api: str,
    collections: Sequence[str] | None = None,
    bbox: Sequence[float] | None = None,
    datetime: str | None = None,
    max_items: int | None = None,
) -> Iterator[pystac.Item]:
    """Items of a STAC API search (pystac-client; GET, which every STAC API serves)."""
    from pystac_client import Client

    try:
        client = Client.open(api)
        search = client.search(
            method="GET",
            collections=list(collections) if collections else None,
            bbox=list(bbox) if bbox else None,
            datetime=datetime,
            max_items=max_items,
        )
        yield from search.items()
    except StacError:
        raise
    except Exception as error:  # pystac-client raises APIError, requests errors, NotImplementedError
        raise StacError(
            f"{api}: STAC search failed ({type(error).__name__}: {error}); fix: check the API URL (its landing "
            "page must conform to item-search), the collection ids and the bbox/datetime syntax"
        ) from error


def item_href(item: pystac.Item, api: str) -> str:
    """An item's self href, else the STAC API's canonical item URL."""
    href = item.get_self_href()
    if href:
        return href
    return f"{api.rstrip('/')}/collections/{item.collection_id}/items/{item.id}"


def stac_search_entries(
    api: str,
    collections: Sequence[str] | None = None,
    bbox: Sequence[float] | None = None,
    datetime: str | None = None,
    max_items: int | None = None,
) -> list[str]:
    """A STAC API search as scene entries: the item hrefs (``predict RUN HREF`` predicts each), in order."""
    return [item_href(item, api) for item in search_items(api, collections, bbox, datetime, max_items)]


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """``"W,S,E,N"`` -> floats; a StacError that shows the form otherwise."""
    try:
        west, south, east, north = (float(v) for v in text.split(","))
    except ValueError as error:
        raise StacError(f"--bbox {text!r}: expected W,S,E,N in degrees, e.g. 11.0,46.0,11.5,46.5") from error
    return west, south, east, north
