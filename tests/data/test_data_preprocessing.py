"""data.Preprocessing, the one definition training, the cache, checkpoints and prediction share."""

from __future__ import annotations

import numpy as np
import pytest

from resnet_apps.data import Preprocessing
from resnet_apps.errors import BandError


def test_cache_key_fields_and_checkpoint_round_trip() -> None:
    pre = Preprocessing(
        bands=("B04", "B08"), scale=1e-4, mean=(0.1, 0.3), std=(0.05, 0.1), image_size=(32, 48), in_chans=2
    )
    # the cache key covers what shapes cached pixels only: statistics and in_chans would orphan old entries
    assert pre.cache_params() == {
        "bands": ("B04", "B08"),
        "scale": 1e-4,
        "image_size": (32, 48),
        "dicom_window": None,
        "grayscale": False,
    }
    raw = pre.to_dict()
    assert raw["image_size"] == [32, 48] and raw["mean"] == [0.1, 0.3]  # plain JSON lists
    assert Preprocessing.from_dict(raw, in_chans=2, source="best.json") == pre


def test_normalise_and_band_choice() -> None:
    pre = Preprocessing(bands=("nir", "red"), scale=0.5, mean=(1.0, 2.0), std=(2.0, 4.0), in_chans=2)
    raw = np.array([[[4.0, 8.0]], [[12.0, np.nan]]], dtype=np.float32)  # [C=2, 1, 2]
    valid = np.array([[True, False]])
    # band 0: (4 * 0.5 - 1) / 2 = 0.5; band 1: (12 * 0.5 - 2) / 4 = 1; the invalid pixel is 0
    np.testing.assert_allclose(pre.normalise(raw, valid), [[[0.5, 0.0]], [[1.0, 0.0]]])
    assert pre.band_indexes(["red", "green", "NIR"], "s.tif") == [2, 0]  # by name, case-insensitive
    # ints are 1-based band numbers (io.bands, as GDAL counts): 3 and 1 are positions 2 and 0
    assert Preprocessing(bands=(3, 1), in_chans=2).band_indexes([None, None, None], "s.tif") == [2, 0]
    with pytest.raises(BandError, match=r"s.tif: bands \['nir'\]"):
        pre.band_indexes(["red", "green"], "s.tif")
    with pytest.raises(BandError, match="are not among the file's 2 bands"):
        Preprocessing(bands=(1, 5, 6)).band_indexes([None, None], "s.tif")
