"""Augmentation of a whole batch on the training device, with plain torch ops (no per-sample Python loop).

The batch counterpart of :mod:`transforms` (the per-sample albumentations path, kept for uncached data):
the same presets and the same domain rules, drawn per sample from one generator seeded by
``(seed, epoch, step)``, so a resumed run draws exactly what the uninterrupted run drew.

- ``nadir``: horizontal flip, vertical flip, 90-degree rotation (square chips; non-square ones only
  rotate by 180 degrees, which keeps the batch's shape), brightness/contrast ``alpha * x + beta * mean``
  (``alpha`` in 1 +- 0.1, ``beta`` in +-0.1 of the image mean, p 0.5, unclipped as in ``transforms``).
- ``chest_xray``: never mirrored unless asked (``hflip``; then ``swap_labels_on_hflip`` swaps paired mask
  labels, e.g. right/left lung); an affine (rotation within 10 degrees, 5 % shift, scale 0.9-1.1, p 0.7;
  bilinear for images, nearest for masks, outside pixels invalid and ignored) and brightness/contrast.
- ``crop``: a random ``crop`` window per sample (segmentation training), padded with invalid pixels when
  the image is smaller.

Parameters are drawn on the CPU (a ``torch.Generator``) and applied on the batch's device, so the draws
do not depend on the device. Flips and rotations act on the image, the valid mask and the label mask alike.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from resnet_apps.constants import IGNORE_INDEX
from resnet_apps.errors import DatasetError

PRESETS = ("nadir", "chest_xray", "none")


@dataclass(frozen=True)
class BatchAugment:
    """What to apply to a batch; build it with :func:`batch_augment`."""

    hflip: bool = False
    vflip: bool = False
    rot90: bool = False
    affine: bool = False
    brightness_contrast: float = 0.0  # the limit of both changes; 0: off
    crop: tuple[int, int] | None = None
    swap: Mapping[int, int] = field(default_factory=dict)

    @property
    def dihedral_only(self) -> bool:
        """Only flips, 90-degree rotations and brightness: the cached path fuses these into the conversion."""
        return self.crop is None and not self.affine and not self.swap

    def draw(self, b: int, gen: torch.Generator, square: bool) -> Draws:
        """Per-sample flips, rotations and brightness/contrast of a batch of ``b``, from ``gen`` (CPU)."""
        flip, turn = torch.zeros(b, dtype=torch.int64), torch.zeros(b, dtype=torch.int64)
        hflipped = torch.zeros(b, dtype=torch.bool)
        if self.hflip:  # hflip o rot(r) o flip^f == rot(-r) o flip^(f+1)
            hflipped = torch.rand(b, generator=gen) < 0.5
            flip, turn = torch.where(hflipped, 1 - flip, flip), torch.where(hflipped, (-turn) % 4, turn)
        if self.vflip:  # vflip == rot(2) o hflip
            on = torch.rand(b, generator=gen) < 0.5
            flip, turn = torch.where(on, 1 - flip, flip), torch.where(on, (2 - turn) % 4, turn)
        if self.rot90:
            k = (
                torch.randint(0, 4, (b,), generator=gen)
                if square
                else 2 * torch.randint(0, 2, (b,), generator=gen)
            )
            turn = (turn + k) % 4
        alpha, beta = torch.ones(b), torch.zeros(b)
        if self.brightness_contrast > 0:
            limit = self.brightness_contrast
            on = torch.rand(b, generator=gen) < 0.5
            alpha = torch.where(on, 1 + (torch.rand(b, generator=gen) * 2 - 1) * limit, alpha)
            beta = torch.where(on, (torch.rand(b, generator=gen) * 2 - 1) * limit, beta)
        return Draws(flip * 4 + turn, hflipped, alpha, beta)

    def __call__(
        self, image: torch.Tensor, valid: torch.Tensor, mask: torch.Tensor | None, seed: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Augment a batch, in place where the shapes allow (no copy of the batch per transform).

        Args:
            image: ``[B, C, H, W]`` float.
            valid: ``[B, H, W]`` bool.
            mask: ``[B, H, W]`` integer class mask (``IGNORE_INDEX`` unlabelled) or None.
            seed: e.g. ``batch_seed(seed, epoch, step)``; the same seed gives the same result.

        Returns:
            ``(image [B, C, h, w], valid [B, h, w], mask [B, h, w] | None)``, ``(h, w)`` the crop or
            ``(H, W)``; without a crop these are the given tensors, changed.
        """
        gen = torch.Generator().manual_seed(seed)
        if self.crop is not None:
            image, valid, mask = _crop(image, valid, mask, self.crop, gen)
        draws = self.draw(image.shape[0], gen, image.shape[-1] == image.shape[-2])
        if mask is not None and self.swap and bool(draws.hflipped.any()):
            lut = torch.arange(256, device=mask.device, dtype=mask.dtype)
            for a, c in self.swap.items():
                lut[int(a)] = int(c)
            sel = draws.hflipped.to(mask.device)
            mask[sel] = lut[mask[sel].long()]  # swapping commutes with moving the pixels
        for code in range(1, 8):
            sel = (draws.codes == code).to(image.device)
            if bool(sel.any()):
                image[sel] = dihedral(image[sel], code)
                valid[sel] = dihedral(valid[sel], code)
                if mask is not None:
                    mask[sel] = dihedral(mask[sel], code)
        if self.affine:
            image, valid, mask = _affine(image, valid, mask, gen)
        if self.brightness_contrast > 0:
            mean = image.mean(dim=(1, 2, 3))
            alpha, beta = draws.alpha.to(image.device), draws.beta.to(image.device)
            image.mul_(alpha[:, None, None, None]).add_((beta * mean)[:, None, None, None])
        return image, valid, mask


@dataclass(frozen=True)
class Draws:
    """One batch's draws: ``codes`` [B] dihedral code ``4 * flip + turns`` (see :func:`dihedral`),
    ``hflipped`` [B] bool (label swaps), ``alpha``/``beta`` [B] brightness/contrast (1 and 0: unchanged)."""

    codes: torch.Tensor
    hflipped: torch.Tensor
    alpha: torch.Tensor
    beta: torch.Tensor


def dihedral(x: torch.Tensor, code: int) -> torch.Tensor:
    """``rot90(hflip^f(x), r)`` over the last two dims for ``code = 4 f + r`` (numpy: :func:`dihedral_np`)."""
    flip, turns = divmod(int(code), 4)
    y = x.flip(-1) if flip else x
    return torch.rot90(y, turns, dims=(-2, -1)) if turns else y


def dihedral_np(x: np.ndarray, code: int) -> np.ndarray:
    """:func:`dihedral` on a numpy array, as a view (no copy)."""
    flip, turns = divmod(int(code), 4)
    y = x[..., ::-1] if flip else x
    # np.rot90(y, turns, axes=(-2, -1)) spelled as slices: the same view without its per-call overhead
    if turns == 1:
        return y[..., ::-1].swapaxes(-2, -1)
    if turns == 2:
        return y[..., ::-1, ::-1]
    if turns == 3:
        return y.swapaxes(-2, -1)[..., ::-1]
    return y


def batch_augment(
    preset: str,
    *,
    crop: int | tuple[int, int] | None = None,
    hflip: bool | None = None,
    swap_labels_on_hflip: Mapping[int, int] | None = None,
) -> BatchAugment | None:
    """The batch augmentation of a recipe's ``data.augment`` preset (None when nothing is to be done).

    Args:
        preset: ``nadir`` | ``chest_xray`` | ``none``.
        crop: segmentation training crop (side or (H, W)).
        hflip: override the preset's horizontal flip (chest_xray: off by default).
        swap_labels_on_hflip: mask labels swapped when a flip happens ({1: 2, 2: 1}).
    """
    if preset not in PRESETS:
        raise DatasetError(f"data.augment: unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
    flip = {"nadir": True, "chest_xray": False, "none": False}[preset] if hflip is None else hflip
    size = (crop, crop) if isinstance(crop, int) else crop
    augment = BatchAugment(
        hflip=flip,
        vflip=preset == "nadir",
        rot90=preset == "nadir",
        affine=preset == "chest_xray",
        brightness_contrast=0.1 if preset in ("nadir", "chest_xray") else 0.0,
        crop=size,
        swap=dict(swap_labels_on_hflip or {}),
    )
    return None if augment == BatchAugment() else augment


def _crop(
    image: torch.Tensor,
    valid: torch.Tensor,
    mask: torch.Tensor | None,
    size: tuple[int, int],
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """A random ``size`` window per sample; images smaller than it are padded (invalid, ignored) first."""
    h, w = size
    pad_h, pad_w = max(0, h - image.shape[-2]), max(0, w - image.shape[-1])
    if pad_h or pad_w:  # centred like albumentations' PadIfNeeded
        pads = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)
        image = F.pad(image, pads)
        valid = F.pad(valid, pads)
        mask = None if mask is None else F.pad(mask, pads, value=IGNORE_INDEX)
    b, big_h, big_w = image.shape[0], image.shape[-2], image.shape[-1]
    top = torch.randint(0, big_h - h + 1, (b,), generator=gen).to(image.device)
    left = torch.randint(0, big_w - w + 1, (b,), generator=gen).to(image.device)
    rows = (top[:, None] + torch.arange(h, device=image.device))[:, :, None]  # [B, h, 1]
    cols = (left[:, None] + torch.arange(w, device=image.device))[:, None, :]  # [B, 1, w]
    batch = torch.arange(b, device=image.device)[:, None, None]
    image = image.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()
    valid = valid[batch, rows, cols]
    mask = None if mask is None else mask[batch, rows, cols]
    return image, valid, mask


def _affine(
    image: torch.Tensor, valid: torch.Tensor, mask: torch.Tensor | None, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Rotation +-10 degrees, shift +-5 %, scale 0.9-1.1 with p 0.7 (the chest_xray preset's Affine).

    Writes the moved samples into ``image``, ``valid`` and ``mask`` in place (they are the caller's batch).
    """
    on, theta = affine_draw(image.shape[0], gen)
    if not bool(on.any()):
        return image, valid, mask
    theta = theta.to(image.device, image.dtype)
    # only the samples that move (by index: cheaper than boolean masks); the others stay bit-for-bit
    sel = torch.nonzero(on)[:, 0].to(image.device)
    h, w = image.shape[-2], image.shape[-1]
    grid = affine_sampling_grid(theta.index_select(0, sel), h, w)
    moved = F.grid_sample(image.index_select(0, sel), grid, mode="bilinear", align_corners=False)
    image.index_copy_(0, sel, moved)
    moving_valid = valid.index_select(0, sel)
    if bool(moving_valid.all()):  # nearest-neighbour validity of an all-valid image: inside the frame or not
        (x_lo, x_hi), (y_lo, y_hi) = inside_range(w, grid.dtype), inside_range(h, grid.dtype)
        gx, gy = grid[..., 0], grid[..., 1]
        inside = (gx >= x_lo).logical_and_(gx <= x_hi).logical_and_(gy >= y_lo).logical_and_(gy <= y_hi)
        valid.index_copy_(0, sel, inside)
    else:
        near = F.grid_sample(moving_valid[:, None].to(image.dtype), grid, mode="nearest", align_corners=False)
        valid.index_copy_(0, sel, near[:, 0] > 0.5)  # pixels from outside the image come out invalid
    if mask is not None:  # shift by one so that the zero padding reads as IGNORE_INDEX
        shifted = F.grid_sample(
            mask.index_select(0, sel)[:, None].to(image.dtype) + 1, grid, mode="nearest", align_corners=False
        )
        labels = shifted[:, 0].round().long() - 1
        mask.index_copy_(0, sel, torch.where(labels < 0, IGNORE_INDEX, labels).to(mask.dtype))
    return image, valid, mask


def affine_draw(b: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The chest_xray affine of a batch of ``b``, drawn from ``gen`` (CPU).

    Returns:
        ``on`` [B] bool (p 0.7) and ``theta`` [B, 2, 3] float32: the ``grid_sample`` matrices mapping
        output to input coordinates in [-1, 1] (identity where not ``on``).
    """
    on = torch.rand(b, generator=gen) < 0.7
    angle = (torch.rand(b, generator=gen) * 20 - 10) * math.pi / 180
    shift = torch.rand(b, 2, generator=gen) * 0.1 - 0.05
    zoom = torch.rand(b, generator=gen) * 0.2 + 0.9
    angle, zoom = torch.where(on, angle, 0.0), torch.where(on, zoom, 1.0)
    shift = torch.where(on[:, None], shift, 0.0)
    # the sampling grid maps output to input coordinates in [-1, 1]: the inverse of rotate-scale-shift
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [torch.stack([cos, -sin, -shift[:, 0] * 2], 1), torch.stack([sin, cos, -shift[:, 1] * 2], 1)], 1
    )
    return on, theta.to(torch.float32)


@functools.lru_cache(maxsize=64)
def inside_range(n: int, dtype: torch.dtype) -> tuple[float, float]:
    """The grid coordinates ``g`` (``dtype``) whose nearest pixel lies in the image of side ``n``.

    ``grid_sample(mode="nearest", align_corners=False)`` reads pixel ``round(((g + 1) * n - 1) / 2)``;
    every step of that expression is monotone in ``g``, so "index in [0, n - 1]" is exactly
    ``lo <= g <= hi`` for two numbers found here by stepping one ulp at a time from the exact -1 and 1:
    two comparisons per pixel instead of the arithmetic, bit-for-bit the same answer.
    """

    def index(g: torch.Tensor) -> float:
        return float(torch.round(((g + 1) * n - 1) / 2))

    def step(g: torch.Tensor, towards: float) -> torch.Tensor:
        return torch.nextafter(g, torch.tensor(towards, dtype=dtype))

    lo, hi = torch.tensor(-1.0, dtype=dtype), torch.tensor(1.0, dtype=dtype)
    while index(lo) >= 0:
        lo = step(lo, -math.inf)
    while index(lo) < 0:
        lo = step(lo, math.inf)
    while index(hi) <= n - 1:
        hi = step(hi, math.inf)
    while index(hi) > n - 1:
        hi = step(hi, -math.inf)
    return float(lo), float(hi)


def affine_sampling_grid(theta: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``F.affine_grid(theta, (B, 1, h, w), align_corners=False)`` by broadcasting: [B, h, w, 2].

    affine_grid runs a batched matrix product over every pixel, several times slower on a CPU. Each
    coordinate is a row term plus a column term, written straight into its half of the grid.
    """
    xs = (torch.arange(w, device=theta.device, dtype=theta.dtype) * 2 + 1) / w - 1
    ys = (torch.arange(h, device=theta.device, dtype=theta.dtype) * 2 + 1) / h - 1
    t = theta[:, :, :, None, None]  # [B, 2, 3, 1, 1]
    grid = torch.empty((theta.shape[0], h, w, 2), device=theta.device, dtype=theta.dtype)
    for k in range(2):  # (t0 * x + t1 * y) + t2, in this order, as the broadcast expression computes it
        torch.add(t[:, k, 0] * xs, t[:, k, 1] * ys[:, None], out=grid[..., k])
        grid[..., k] += t[:, k, 2]
    return grid
