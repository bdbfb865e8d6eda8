"""Batch augmentation on the device: seeded, resume-exact, and images, valid masks and label masks agree."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from resnet_apps.constants import IGNORE_INDEX
from resnet_apps.data.batch_augment import BatchAugment, batch_augment
from resnet_apps.errors import DatasetError
from resnet_apps.train.batches import batch_seed


def _batch(
    b: int = 16, c: int = 3, h: int = 8, w: int = 8
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    image = torch.arange(b * c * h * w, dtype=torch.float32).reshape(b, c, h, w)
    valid = torch.ones(b, h, w, dtype=torch.bool)
    valid[:, 0, :3] = False  # an asymmetric invalid patch, to see where it goes
    mask = (torch.arange(h * w).reshape(h, w) % 3).to(torch.uint8).expand(b, h, w).clone()
    return image, valid, mask


def _run(augment: BatchAugment, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    image, valid, mask = _batch()
    return augment(image, valid, mask, seed)


def test_presets() -> None:
    nadir = batch_augment("nadir")
    assert nadir is not None and nadir.hflip and nadir.vflip and nadir.rot90 and not nadir.affine
    chest = batch_augment("chest_xray")
    assert chest is not None and not chest.hflip and chest.affine  # never mirrored by default
    assert batch_augment("none") is None
    with pytest.raises(DatasetError, match="data.augment"):
        batch_augment("mirror")


def test_same_seed_same_batch_and_resume_equal() -> None:
    augment = batch_augment("nadir")
    assert augment is not None
    a = _run(augment, batch_seed(0, 2, 5))
    _run(augment, batch_seed(0, 2, 4))  # an uninterrupted run drew step 4 before; a resumed one did not
    b = _run(augment, batch_seed(0, 2, 5))
    for x, y in zip(a, b, strict=True):
        assert x is not None and y is not None and torch.equal(x, y)
    other = _run(augment, batch_seed(0, 3, 5))  # another epoch: other draws
    assert not torch.equal(a[0], other[0])
    assert batch_seed(0, 2, 5) != batch_seed(1, 2, 5) != batch_seed(0, 2, 6)


def test_flips_and_rotations_move_images_and_masks_alike() -> None:
    augment = BatchAugment(hflip=True, vflip=True, rot90=True)
    image, valid, mask = _batch()
    out_image, out_valid, out_mask = augment(image.clone(), valid.clone(), mask.clone(), 7)
    assert out_mask is not None
    changed = 0
    for i in range(len(image)):
        # find the dihedral transform that maps the image; the valid and label masks must follow it
        matches = []
        for k in range(4):
            for flip in (False, True):
                t_img = torch.rot90(image[i].flip(-1) if flip else image[i], k, dims=(-2, -1))
                if torch.equal(t_img, out_image[i]):
                    matches.append((k, flip))
        assert len(matches) == 1, "each sample is one flip/rotation of its input"
        k, flip = matches[0]
        changed += (k, flip) != (0, False)
        for before, after in ((valid[i], out_valid[i]), (mask[i], out_mask[i])):
            expected = torch.rot90(before.flip(-1) if flip else before, k, dims=(-2, -1))
            assert torch.equal(expected, after)
    assert changed >= 8  # of 16 samples, about 14 expected to move


def test_hflip_swaps_paired_labels() -> None:
    augment = BatchAugment(hflip=True, swap={1: 2, 2: 1})
    image, valid, mask = _batch()
    out_image, _, out_mask = augment(image.clone(), valid.clone(), mask.clone(), 3)
    assert out_mask is not None
    lut = torch.tensor([0, 2, 1] + list(range(3, 256)), dtype=torch.uint8)
    flipped = [i for i in range(len(image)) if not torch.equal(out_image[i], image[i])]
    assert flipped and len(flipped) < len(image)
    for i in range(len(image)):
        want = lut[mask[i].flip(-1).long()] if i in flipped else mask[i]
        assert torch.equal(out_mask[i], want)


def test_affine_marks_outside_pixels_invalid_and_ignored() -> None:
    augment = batch_augment("chest_xray")
    assert augment is not None
    image = torch.ones(32, 1, 32, 32)
    valid = torch.ones(32, 32, 32, dtype=torch.bool)
    mask = torch.ones(32, 32, 32, dtype=torch.uint8)
    out_image, out_valid, out_mask = augment(image, valid, mask, 11)
    assert out_mask is not None
    moved = (~out_valid).flatten(1).any(1)
    assert 10 <= int(moved.sum()) < 32  # p = 0.7 of a rotation / shift / zoom-out
    assert torch.equal(out_mask == IGNORE_INDEX, ~out_valid)  # the mask is ignored exactly where invalid
    assert set(np.unique(out_mask.numpy())) <= {1, IGNORE_INDEX}


def test_crop_and_brightness() -> None:
    augment = BatchAugment(crop=(6, 5), brightness_contrast=0.1)
    image, valid, mask = _batch()
    out_image, out_valid, out_mask = augment(image, valid.clone(), mask.clone(), 5)
    assert out_image.shape == (16, 3, 6, 5) and out_valid.shape == (16, 6, 5)
    assert out_mask is not None and out_mask.shape == (16, 6, 5)
    # each crop is a window of its image up to alpha * x + beta: differences along a row are scaled copies
    for i in range(16):
        row = out_image[i, 0, 0]
        steps = row[1:] - row[:-1]
        assert torch.allclose(steps, steps[0].expand_as(steps), atol=1e-3)
        assert 0.89 <= float(steps[0]) <= 1.11  # the input steps by 1 along a row


def test_affine_grid_by_broadcasting_equals_torch() -> None:
    from resnet_apps.data.batch_augment import affine_sampling_grid

    theta = torch.tensor([[[0.9, -0.2, 0.05], [0.2, 0.9, -0.03]], [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    want = torch.nn.functional.affine_grid(theta, [2, 1, 12, 10], align_corners=False)
    torch.testing.assert_close(affine_sampling_grid(theta, 12, 10), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [1, 7, 64, 223, 224])
def test_inside_range_equals_the_nearest_pixel_rule(n: int, dtype: torch.dtype) -> None:
    """Two comparisons give exactly grid_sample's nearest-pixel "inside" rule, also one ulp either side."""
    from resnet_apps.data.batch_augment import inside_range

    lo, hi = inside_range(n, dtype)
    edges = torch.tensor([lo, hi, -1.0, 1.0, 1 - 1 / n, -1 + 1 / n], dtype=dtype)
    near = torch.cat([edges, torch.nextafter(edges, edges + 1), torch.nextafter(edges, edges - 1)])
    g = torch.cat([near, torch.linspace(-1.2, 1.2, 4001, dtype=dtype)])
    index = torch.round(((g + 1) * n - 1) / 2)
    assert torch.equal((g >= lo) & (g <= hi), (index >= 0) & (index <= n - 1))


def test_affine_validity_equals_the_arithmetic_and_still_samples_stay_bitwise() -> None:
    from resnet_apps.data.batch_augment import affine_sampling_grid

    augment = batch_augment("chest_xray")
    assert augment is not None
    image = torch.rand(24, 1, 30, 26, generator=torch.Generator().manual_seed(0))
    out_image, out_valid, _ = augment(image.clone(), torch.ones(24, 30, 26, dtype=torch.bool), None, 4)
    # redo the affine's draws: the same generator sequence as BatchAugment.__call__ (no crop, no flips)
    gen = torch.Generator().manual_seed(4)
    augment.draw(24, gen, False)
    on = torch.rand(24, generator=gen) < 0.7
    angle = (torch.rand(24, generator=gen) * 20 - 10) * np.pi / 180
    shift = torch.rand(24, 2, generator=gen) * 0.1 - 0.05
    zoom = torch.rand(24, generator=gen) * 0.2 + 0.9
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [torch.stack([cos, -sin, -shift[:, 0] * 2], 1), torch.stack([sin, cos, -shift[:, 1] * 2], 1)], 1
    )
    grid = affine_sampling_grid(theta[on], 30, 26)
    col = torch.round(((grid[..., 0] + 1) * 26 - 1) / 2)
    row = torch.round(((grid[..., 1] + 1) * 30 - 1) / 2)
    assert torch.equal(out_valid[on], (col >= 0) & (col <= 25) & (row >= 0) & (row <= 29))
    assert torch.equal(out_valid[~on], torch.ones_like(out_valid[~on]))
    # samples that do not move only get the brightness change: their pixels stay proportional
    still = torch.nonzero(~on)[:, 0]
    assert len(still) > 0
    for i in still.tolist():
        ratio = (out_image[i] - out_image[i].mean()) / (image[i] - image[i].mean())
        torch.testing.assert_close(ratio, ratio.flatten()[0].expand_as(ratio), rtol=1e-3, atol=1e-3)
