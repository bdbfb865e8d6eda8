"""Remote COGs over loopback HTTP (issue 17 items 1 and 5): range reads, exact maps, bytes, dropped links.

A COG made from the shared NAIP scene (256 x 256 tiles, overviews) is served by the package's loopback
Range server (``resnet_apps.bench.http_server``); the same file predicted locally is the reference.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rio_cogeo.cogeo import cog_translate
from rio_cogeo.profiles import cog_profiles

from resnet_apps.bench.http_server import RangeServer
from resnet_apps.cli import main
from resnet_apps.errors import RemoteReadError
from resnet_apps.models.checkpoint import save_checkpoint
from resnet_apps.models.heads import build_model
from resnet_apps.predict.remote import block_bytes
from resnet_apps.predict.scene import predict_scene

HEADER = 16384  # what GDAL reads of a TIFF on open (GDAL_INGESTED_BYTES_AT_OPEN), before any block


class SignModel(torch.nn.Module):
    """Segmentation stand-in: logits [x_0 - x_3, 0] per pixel (red minus nir decides the class)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[:, :1] - x[:, 3:4], torch.zeros_like(x[:, :1])], dim=1)


META = {
    "task": "segmentation",
    "model": {"in_chans": 4, "num_classes": 2},
    "classes": ["water", "land"],
    "preprocessing": {"bands": None, "scale": 1 / 255, "mean": [0.4] * 4, "std": [0.2] * 4, "image_size": 64},
    "operating_threshold": 0.5,
}
OPTIONS = {"tile": 64, "block": 128, "progress": False}


@pytest.fixture(scope="module")
def served(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding ``naip.tif``: the shared NAIP scene (934 x 723 x 4 uint8) as a COG with 256 px tiles."""
    folder = tmp_path_factory.mktemp("served")
    plain = folder / "plain.tif"
    shutil.copy(shared_data / "geotiff_scenes" / "naip_m_4709963_se_14_1_20200831.tif", plain)
    # named bands, as real products have (and no guess whether the 4th band is alpha)
    with rasterio.open(plain, "r+", IGNORE_COG_LAYOUT_BREAK="YES") as dst:
        for i, name in enumerate(("red", "green", "blue", "nir"), start=1):
            dst.set_band_description(i, name)
    profile = dict(cog_profiles.get("deflate"), blockxsize=256, blockysize=256)
    cog_translate(str(plain), str(folder / "naip.tif"), profile, quiet=True)
    plain.unlink()
    return folder


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two retries 50 ms apart (the defaults wait 0.5 s, doubled), so a dropped link fails in a second."""
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "2")
    monkeypatch.setenv("GDAL_HTTP_RETRY_DELAY", "0.05")


def _map(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def test_remote_scene_equals_local_and_reads_about_its_blocks(served: Path, tmp_path: Path) -> None:
    local = predict_scene(SignModel(), META, served / "naip.tif", tmp_path / "local", **OPTIONS)
    with RangeServer(served) as server:
        url = server.url("naip.tif")
        remote = predict_scene(SignModel(), META, url, tmp_path / "remote", **OPTIONS)
        served_bytes = server.bytes_served
    expected = _map(local["class_path"])
    assert (_map(remote["class_path"]) == expected).all()  # the same map, pixel for pixel
    assert len(np.unique(expected)) == 2  # both classes occur: the equality is not trivially all-nodata
    assert remote["class_path"] == tmp_path / "remote" / "naip_class.tif"  # output local, named by the URL
    assert remote["bytes_read"] == served_bytes  # GDAL's own count of downloaded bytes = what was sent
    assert local["bytes_read"] is None
    blocks = block_bytes(served / "naip.tif")  # full-resolution tiles: the overviews are never read
    assert served_bytes <= 1.1 * blocks + HEADER
    assert served_bytes < (served / "naip.tif").stat().st_size
    with rasterio.open(remote["class_path"]) as cls:
        assert cls.tags()["SOURCE_URL"] == url


@pytest.mark.parametrize(
    "window",
    [
        (256, 256, 256, 256),  # exactly one COG tile of 12
        (300, 300, 200, 300),  # straddles 2 tiles
        (0, 700, 723, 234),  # the right column of tiles, edge blocks with halos cut by the window
    ],
)
def test_windowed_remote_fetches_only_the_window_blocks(
    served: Path, tmp_path: Path, window: tuple[int, int, int, int]
) -> None:
    local = predict_scene(
        SignModel(), META, served / "naip.tif", tmp_path / "local", window=window, **OPTIONS
    )
    with RangeServer(served) as server:
        remote = predict_scene(
            SignModel(), META, server.url("naip.tif"), tmp_path / "remote", window=window, **OPTIONS
        )
        served_bytes = server.bytes_served
    assert (_map(remote["class_path"]) == _map(local["class_path"])).all()
    assert remote["shape"] == window[2:]
    blocks = block_bytes(served / "naip.tif", window)
    assert served_bytes <= 1.1 * blocks + HEADER
    assert served_bytes < 0.5 * (served / "naip.tif").stat().st_size
    with rasterio.open(remote["class_path"]) as cls, rasterio.open(served / "naip.tif") as src:
        # georeferenced at the window: its top-left pixel is the scene's pixel (row, col)
        assert cls.transform.c == pytest.approx(src.transform.c + window[1] * src.transform.a)
        assert cls.transform.f == pytest.approx(src.transform.f + window[0] * src.transform.e)


def test_dropped_connection_raises_a_typed_error_and_leaves_no_map(
    served: Path, tmp_path: Path, fast_retries: None
) -> None:
    size = (served / "naip.tif").stat().st_size
    out = tmp_path / "out"
    with RangeServer(served, drop_from=size // 2) as server:  # every response past the middle is cut
        url = server.url("naip.tif")
        with pytest.raises(RemoteReadError, match="retries with backoff") as caught:
            predict_scene(SignModel(), META, url, out, **OPTIONS)
        assert server.dropped == 3  # the first cut and both retries
    assert url in str(caught.value)
    assert not (out / "naip_class.tif").exists()
    assert [p.name for p in out.iterdir()] == []  # no partial map nor temporary left behind


def test_a_dropped_connection_is_retried(served: Path, tmp_path: Path, fast_retries: None) -> None:
    size = (served / "naip.tif").stat().st_size
    local = predict_scene(SignModel(), META, served / "naip.tif", tmp_path / "local", **OPTIONS)
    with RangeServer(served, drop_from=size // 2, drops=1) as server:  # one cut, then a healthy link
        remote = predict_scene(SignModel(), META, server.url("naip.tif"), tmp_path / "remote", **OPTIONS)
        assert server.dropped == 1
    assert (_map(remote["class_path"]) == _map(local["class_path"])).all()


@pytest.mark.slow
def test_cli_predicts_a_url_into_a_local_folder(served: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    run = tmp_path / "run"
    meta = {key: META[key] for key in ("classes", "preprocessing", "operating_threshold")}
    save_checkpoint(
        run / "checkpoints" / "best", build_model("segmentation", "resnet18", in_chans=4, num_classes=2), meta
    )
    out = tmp_path / "out"
    with RangeServer(served) as server:
        args = ["predict", str(run), server.url("naip.tif"), "--out", str(out), "--no-progress"]
        assert main([*args, "--window", "256,256,256,256", "--tile", "64", "--block", "128"]) == 0
    with rasterio.open(out / "naip_class.tif") as cls:
        assert cls.shape == (256, 256)
        assert cls.tags()["SOURCE_URL"].endswith("/naip.tif")
