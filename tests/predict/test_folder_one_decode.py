"""Folder predict decodes each file once, and --frame / --max-pixels reach the reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from resnet_apps.errors import PixelBudgetError
from resnet_apps.predict.folder import ImageLoader

# a chest checkpoint trained on DICOM: one grey band named "gray", 16 x 16 input
META = {
    "model": {"in_chans": 1},
    "preprocessing": {"bands": ["gray"], "scale": 1 / 255, "mean": [0.5], "std": [0.25], "image_size": 16},
}


def test_rgb_png_for_a_grey_checkpoint_is_decoded_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "film.png"
    Image.fromarray(np.full((40, 30, 3), 51, dtype=np.uint8)).save(path)
    decodes = []
    original = Image._getdecoder

    def counting_decoder(*args: object, **kwargs: object) -> object:
        decodes.append(1)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Image, "_getdecoder", counting_decoder)
    x = ImageLoader(META)(path)
    assert len(decodes) == 1  # the "gray" band is refused from the header, then one full read
    assert tuple(x.shape) == (1, 16, 16)
    # 51/255 = 0.2 on every channel, grey = 0.2, standardised (0.2 - 0.5) / 0.25 = -1.2
    np.testing.assert_allclose(x.numpy(), -1.2, atol=1e-5)


def test_max_pixels_reaches_the_folder_reader(tmp_path: Path) -> None:
    path = tmp_path / "film.png"
    Image.fromarray(np.zeros((40, 30), dtype=np.uint8)).save(path)
    with pytest.raises(PixelBudgetError, match="film.png"):
        ImageLoader(META, max_pixels=40 * 30 - 1)(path)
    assert tuple(ImageLoader(META, max_pixels=40 * 30)(path).shape) == (1, 16, 16)


def test_frame_option_reaches_the_folder_reader(tmp_path: Path) -> None:
    from dicom_fixtures import make_dicom

    from resnet_apps.io import FrameRequiredError

    stack = np.stack([np.full((4, 5), 10 * k, np.uint16) for k in range(3)])
    path = make_dicom(tmp_path / "mf.dcm", stack, frames=3, window=(10, 20), voi_function="LINEAR_EXACT")
    meta = {**META, "preprocessing": {**META["preprocessing"], "scale": 1.0}}
    with pytest.raises(FrameRequiredError, match="--frame"):
        ImageLoader(meta)(path)
    # frame 1 holds 10: LINEAR_EXACT window (10, 20) maps it to 0.5, standardised (0.5 - 0.5) / 0.25 = 0
    np.testing.assert_allclose(ImageLoader(meta, frame="middle")(path).numpy(), 0.0, atol=1e-6)
    np.testing.assert_allclose(ImageLoader(meta, frame=2)(path).numpy(), 2.0, atol=1e-6)  # 20 -> 1.0
