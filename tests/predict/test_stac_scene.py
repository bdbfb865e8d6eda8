"""STAC items and searches over loopback HTTP (issue 17 items 2 and 5).

A static catalogue written here: one item whose bands are single-band assets at 10 m (B04) and 20 m (B11),
described with eo:bands and raster:bands, plus a 3-band "visual" asset that also says "red" and a
thumbnail; a minimal STAC API (a landing page that conforms to item-search and a static search answer)
next to it. All served by the package's loopback Range server.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import torch
from pystac.extensions.eo import Band, EOExtension
from pystac.extensions.raster import RasterBand, RasterExtension
from rasterio.transform import from_origin

from resnet_apps.bench.http_server import RangeServer
from resnet_apps.cli import main
from resnet_apps.errors import StacError
from resnet_apps.io import read_geotiff
from resnet_apps.models.checkpoint import save_checkpoint
from resnet_apps.models.heads import build_model
from resnet_apps.predict.manifest import Shard, manifest_entries
from resnet_apps.predict.manifest_run import CheckpointInfo, run_manifest, scene_predictor
from resnet_apps.predict.remote import gdal_env
from resnet_apps.predict.stac import build_vrt, read_item, resolve_assets, stac_search_entries
from resnet_apps.predict.stac_scene import predict_item

ORIGIN = (600_000.0, 5_100_000.0)


class DiffModel(torch.nn.Module):
    """Segmentation stand-in: logits [x_0 - x_1, 0] (B04 against B11 decides the class)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[:, :1] - x[:, 1:2], torch.zeros_like(x[:, :1])], dim=1)


META = {
    "task": "segmentation",
    "model": {"in_chans": 2, "num_classes": 2},
    "classes": ["bright", "dark"],
    "preprocessing": {"bands": ["B04", "B11"], "scale": 1e-4, "mean": [0.1, 0.1], "std": [0.05, 0.05]},
    "operating_threshold": 0.5,
}


def _cog(path: Path, data: np.ndarray, res: float) -> None:
    with rasterio.open(
        path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
        dtype=str(data.dtype), nodata=0, crs="EPSG:32632", transform=from_origin(*ORIGIN, res, res),
        tiled=True, blockxsize=32, blockysize=32, compress="deflate",
    ) as dst:  # fmt: skip
        dst.write(data)


def _item(folder: Path, b04: np.ndarray, b11: np.ndarray) -> Path:
    """Write the assets and ``item.json`` (relative asset hrefs, no self link) into ``folder``."""
    _cog(folder / "B04.tif", b04[None], 10.0)
    _cog(folder / "B11.tif", b11[None], 20.0)
    _cog(folder / "TCI.tif", np.stack([b04 // 40] * 3).astype(np.uint8), 10.0)
    item = pystac.Item(
        "S2X_32TPS_20240601",
        geometry={"type": "Point", "coordinates": [10.3, 46.0]},
        bbox=[10.2, 45.9, 10.4, 46.1],
        datetime=pystac.utils.str_to_datetime("2024-06-01T10:30:00Z"),
        properties={},
        collection="sentinel-2-l2a",
    )
    EOExtension.add_to(item)
    RasterExtension.add_to(item)
    item.set_self_href(str(folder / "item.json"))
    for key, name, common, res in (
        ("visual", None, None, 10),
        ("B04", "B04", "red", 10),
        ("swir16", "B11", "swir16", 20),
    ):
        href = str(folder / ("TCI.tif" if key == "visual" else f"{name}.tif"))
        asset = pystac.Asset(href, media_type=pystac.MediaType.COG, roles=["data"])
        item.add_asset(key, asset)
        if key == "visual":  # a 3-band asset that also offers "red": the single-band B04 must win
            EOExtension.ext(asset).bands = [
                Band.create(name=c, common_name=c) for c in ("red", "green", "blue")
            ]
        else:
            EOExtension.ext(asset).bands = [Band.create(name=name, common_name=common)]
            RasterExtension.ext(asset).bands = [
                RasterBand.create(nodata=0, data_type="uint16", spatial_resolution=res)
            ]
    item.add_asset("thumbnail", pystac.Asset(str(folder / "B04.tif"), roles=["thumbnail"]))
    item.make_asset_hrefs_relative()
    item.save_object(include_self_link=False)
    return folder / "item.json"


@pytest.fixture
def catalogue(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """The item folder and its B04 (10 m, 64 x 80) and B11 (20 m, 32 x 40) arrays (uint16, no nodata)."""
    rng = np.random.default_rng(0)
    b04 = rng.integers(200, 2000, size=(64, 80)).astype(np.uint16)
    b11 = rng.integers(200, 2000, size=(32, 40)).astype(np.uint16)
    folder = tmp_path / "stac"
    folder.mkdir()
    _item(folder, b04, b11)
    return folder, b04, b11


def _stack(item_source: str, dest: Path) -> tuple[np.ndarray, list[str]]:
    with gdal_env():
        stacked = build_vrt(read_item(item_source), ["B04", "B11"], dest)
        data, meta = read_geotiff(stacked.vrt)
    assert stacked.resolution == 10.0  # the finest asset's (the checkpoint records no ground resolution)
    return data, meta.band_names


def test_remote_item_stacks_bands_of_two_resolutions_like_the_local_item(
    catalogue: tuple[Path, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    folder, b04, b11 = catalogue
    local, names = _stack(str(folder / "item.json"), tmp_path / "local.vrt")
    with RangeServer(folder) as server:
        remote, _ = _stack(server.url("item.json"), tmp_path / "remote.vrt")
    assert names == ["B04", "B11"]
    assert local.shape == (2, 64, 80)
    assert (local[0] == b04).all()
    assert (local[1] == np.repeat(np.repeat(b11, 2, axis=0), 2, axis=1)).all()  # nearest: 2 x 2 equal pixels
    assert (remote == local).all()


def test_item_prediction_records_item_and_asset_hrefs(
    catalogue: tuple[Path, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    folder, b04, b11 = catalogue
    options = {"tile": 32, "block": 64, "progress": False}
    local = predict_item(DiffModel(), META, str(folder / "item.json"), tmp_path / "local", **options)
    with RangeServer(folder) as server:
        url = server.url("item.json")
        remote = predict_item(DiffModel(), META, url, tmp_path / "remote", **options)
        served = server.bytes_served
    assert remote["class_path"] == tmp_path / "remote" / "S2X_32TPS_20240601_class.tif"
    with rasterio.open(remote["class_path"]) as cls, rasterio.open(local["class_path"]) as ref:
        classes = cls.read(1)
        assert (classes == ref.read(1)).all()
        tags = cls.tags()
        assert cls.transform == from_origin(*ORIGIN, 10.0, 10.0) and cls.shape == (64, 80)
    # class "bright" (0) where B04 > B11 (equal mean and std: the normalised difference has the same sign),
    # as p(dark) = sigmoid(-diff) < 0.5 there
    b11_up = np.repeat(np.repeat(b11, 2, axis=0), 2, axis=1).astype(np.int64)
    assert (classes == np.where(b04.astype(np.int64) - b11_up > 0, 0, 1)).all()  # ties: p(dark) = 0.5
    hrefs = {"B04": server.url("B04.tif"), "B11": server.url("B11.tif")}
    assert tags["STAC_ITEM_ID"] == "S2X_32TPS_20240601"
    assert tags["STAC_ITEM_HREF"] == url
    assert json.loads(tags["STAC_ASSETS"]) == hrefs  # the single-band assets, not the visual one
    assert remote["stac"]["assets"] == hrefs and remote["stac"]["item_id"] == "S2X_32TPS_20240601"
    # these assets are smaller than what GDAL reads on open (16 KiB): fetched while stacking, not predicting
    assert remote["bytes_read"] is not None and 0 <= remote["bytes_read"] <= served


def test_stac_1_1_bands_and_common_names_resolve(tmp_path: Path) -> None:
    item = pystac.Item("x", None, None, pystac.utils.str_to_datetime("2024-01-01T00:00:00Z"), {})
    # STAC 1.1 "bands" (no eo extension declared): checkpoint band B04 finds the asset whose common name is red
    item.add_asset(
        "red",
        pystac.Asset("https://h/red.tif", extra_fields={"bands": [{"name": "r", "eo:common_name": "red"}]}),
    )
    item.add_asset(
        "nir",
        pystac.Asset("https://h/nir.tif", extra_fields={"bands": [{"name": "N", "eo:common_name": "nir"}]}),
    )
    found = resolve_assets(item, ["B04", "N"])
    assert [(b.band, b.asset_key, b.href) for b in found] == [
        ("B04", "red", "https://h/red.tif"),
        ("N", "nir", "https://h/nir.tif"),
    ]
    with pytest.raises(StacError, match="no data asset gives band 'B11'.*'swir16'"):
        resolve_assets(item, ["B11"])


def _api(folder: Path, server: RangeServer) -> str:
    """A landing page conforming to item-search, and a search answer listing the item (the server ignores
    the query: what is asserted is that the client reads the answer into item hrefs)."""
    api = folder / "api"
    api.mkdir()
    landing = {
        "type": "Catalog", "id": "loopback", "stac_version": "1.0.0", "description": "test API",
        "conformsTo": ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search"],
        "links": [
            {"rel": "self", "href": server.url("api/landing.json")},
            {"rel": "root", "href": server.url("api/landing.json")},
            {"rel": "search", "href": server.url("api/search"), "type": "application/geo+json", "method": "GET"},
        ],
    }  # fmt: skip
    feature = json.loads((folder / "item.json").read_text())
    feature["links"] = [{"rel": "self", "href": server.url("item.json")}]
    feature["assets"] = {
        k: dict(v, href=server.url(Path(v["href"]).name)) for k, v in feature["assets"].items()
    }
    search = {"type": "FeatureCollection", "features": [feature], "links": []}
    (api / "landing.json").write_text(json.dumps(landing))
    (api / "search").write_text(json.dumps(search))
    return server.url("api/landing.json")


def test_stac_search_entries_are_item_hrefs(catalogue: tuple[Path, np.ndarray, np.ndarray]) -> None:
    folder, _, _ = catalogue
    with RangeServer(folder) as server:
        api = _api(folder, server)
        entries = stac_search_entries(
            api, ["sentinel-2-l2a"], (10.0, 45.0, 11.0, 47.0), "2024-06-01/2024-06-30"
        )
        assert entries == [server.url("item.json")]


@pytest.mark.slow
def test_cli_predicts_a_stac_search(catalogue: tuple[Path, np.ndarray, np.ndarray], tmp_path: Path) -> None:
    folder, _, _ = catalogue
    torch.manual_seed(0)
    run = tmp_path / "run"
    meta = {key: META[key] for key in ("classes", "preprocessing", "operating_threshold")}
    save_checkpoint(
        run / "checkpoints" / "best", build_model("segmentation", "resnet18", in_chans=2, num_classes=2), meta
    )
    out = tmp_path / "out"
    with RangeServer(folder) as server:
        api = _api(folder, server)
        args = ["predict", str(run), "--stac", api, "--collection", "sentinel-2-l2a", "--bbox", "10,45,11,47"]
        assert main([*args, "--out", str(out), "--no-progress", "--tile", "32", "--block", "64"]) == 0
    with rasterio.open(out / "S2X_32TPS_20240601_class.tif") as cls:
        assert cls.shape == (64, 80)
        assert cls.tags()["STAC_ITEM_ID"] == "S2X_32TPS_20240601"


def test_checkpoint_ground_resolution_sets_the_grid(
    catalogue: tuple[Path, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    folder, _, b11 = catalogue
    meta = dict(META, ground_resolution=20.0)  # a checkpoint trained at 20 m: B04 is resampled down, B11 kept
    result = predict_item(
        DiffModel(), meta, str(folder / "item.json"), tmp_path, tile=16, block=32, progress=False
    )
    assert result["stac"]["resolution"] == 20.0
    with rasterio.open(result["class_path"]) as cls:
        assert cls.shape == (32, 40) and cls.transform == from_origin(*ORIGIN, 20.0, 20.0)
    with gdal_env():
        stacked = build_vrt(read_item(str(folder / "item.json")), ["B04", "B11"], tmp_path / "s.vrt", 20.0)
        data, _ = read_geotiff(stacked.vrt)
    assert (data[1] == b11).all()  # the 20 m asset on its own grid: unchanged


def test_manifest_of_a_stac_item_url_and_a_cog_url_goes_through_the_remote_readers(
    catalogue: tuple[Path, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    folder, b04, b11 = catalogue
    _cog(folder / "pair.tif", np.stack([b04, b04 // 2]), 10.0)  # B04 against half of it: all "bright"
    predictor = scene_predictor(DiffModel(), META, tile=32, block=64, progress=False)
    checkpoint = CheckpointInfo("ckpt", "0" * 64, "1" * 64)
    with RangeServer(folder) as server:
        entries = manifest_entries([server.url("item.json"), server.url("pair.tif")])
        report = run_manifest(entries, tmp_path / "out", predictor, checkpoint=checkpoint, shard=Shard(0, 1))
    assert [o.action for o in report.outcomes] == ["predicted", "predicted"], [
        o.reason for o in report.outcomes
    ]
    item_done = json.loads((tmp_path / "out" / "item" / "done.json").read_text())
    assert item_done["source_info"]["kind"] == "stac_item"
    assert item_done["source_info"]["item_id"] == "S2X_32TPS_20240601"
    assert item_done["source_info"]["assets"] == {"B04": server.url("B04.tif"), "B11": server.url("B11.tif")}
    pair_done = json.loads((tmp_path / "out" / "pair" / "done.json").read_text())
    assert pair_done["source_info"]["kind"] == "url" and pair_done["source_info"]["url"] == server.url(
        "pair.tif"
    )
    assert pair_done["source_info"]["bytes_read"] > 0
    with rasterio.open(tmp_path / "out" / "pair" / "pair_class.tif") as cls:
        assert (cls.read(1) == 0).all()  # B04 > B04 // 2 everywhere (values >= 200)
