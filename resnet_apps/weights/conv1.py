"""Band-aware conv1: ImageNet RGB filters placed on the bands that carry red, green and blue."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from resnet_apps.errors import WeightsFormatError
from resnet_apps.weights.files import read_tensor
from resnet_apps.weights.locations import ResolvedWeights


def rgb_band_conv1(rgb_weight: torch.Tensor, in_chans: int, rgb_bands: Sequence[int]) -> torch.Tensor:
    """conv1 weights for ``in_chans`` bands from an RGB-trained kernel, knowing which bands are R, G, B.

    The R, G and B filters are copied onto bands ``rgb_bands``; every other band gets the mean RGB
    filter. Arithmetic of the scale: for an input whose bands all carry the same value v (after
    normalisation), the RGB model responds v * (W_r + W_g + W_b) = v * 3 * mean. Unscaled, the new kernel
    would respond v * (W_r + W_g + W_b + (N - 3) * mean) = v * N * mean, i.e. N/3 times stronger, so
    every band is multiplied by 3/N. The per-filter sum over input channels then equals the original
    3-channel sum, and batch norm statistics see activations of the magnitude they were trained on.
    (timm's default scales its repeated R, G, B, R, G, ... copies by the same 3/N.)

    Args:
        rgb_weight: [O, 3, k, k] ImageNet kernel in (R, G, B) order.
        in_chans: N >= 3, the input bands.
        rgb_bands: (index of red, index of green, index of blue) among the N input bands.

    Returns:
        [O, N, k, k] kernel, same dtype as ``rgb_weight``.
    """
    if rgb_weight.ndim != 4 or rgb_weight.shape[1] != 3:
        raise WeightsFormatError(
            "conv1_init='rgb_bands' needs a 3-channel RGB source kernel, got shape "
            f"{tuple(rgb_weight.shape)}; "
            "use conv1_init='timm' for weights trained on other bands"
        )
    bands = [int(i) for i in rgb_bands]
    if len(bands) != 3 or len(set(bands)) != 3 or not all(0 <= i < in_chans for i in bands):
        raise ValueError(
            f"rgb_bands must be 3 distinct band indices in [0, {in_chans}), got {tuple(rgb_bands)}; "
            "fix data.rgb_bands in the recipe (e.g. [B04, B03, B02] for Sentinel-2)"
        )
    weight = rgb_weight.float()
    out = weight.mean(dim=1, keepdim=True).repeat(1, in_chans, 1, 1)
    for rgb_index, band in enumerate(bands):
        out[:, band] = weight[:, rgb_index]
    return (out * (3.0 / in_chans)).to(rgb_weight.dtype)


def first_conv_weight(resolved: ResolvedWeights, first_conv: str) -> torch.Tensor:
    """The untouched source conv1 kernel [O, C_src, k, k] of a resolved request (one tensor read)."""
    key = f"{first_conv}.weight"
    if resolved.state_dict is not None:
        return resolved.state_dict[key]
    assert resolved.path is not None
    return read_tensor(resolved.path, key)
