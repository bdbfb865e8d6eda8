"""Do the masks hold the codes the recipe declares? A cheap look at a few masks (no torch).

A segmentation recipe whose masks hold codes that ``data.classes`` / ``data.source.mask_values`` do not
map (e.g. 10/30/50/70/100 with classes 0..4) ignores every pixel: the loss is NaN on the first step and
the run dies with a misleading "lower train.lr". ``resnet-apps check`` samples a few masks with
:func:`sample_masks`; the training loop names the codes with :func:`unmapped_values_text`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from resnet_apps.constants import IGNORE_INDEX
from resnet_apps.data.config import SourceConfig
from resnet_apps.data.masks import MaskDecoder, read_mask_pixels
from resnet_apps.data.records import Record
from resnet_apps.errors import ResnetAppsError

_SHOWN = 12  # codes listed in a message


@dataclass
class MaskSample:
    """What :func:`sample_masks` found: files read, codes the recipe does not map, masks with no label."""

    files: int = 0
    unmapped: dict[str, list[int]] = field(default_factory=dict)  # mask file -> unmapped codes
    unlabelled: list[str] = field(default_factory=list)  # mask files whose every pixel is ignored
    errors: list[str] = field(default_factory=list)


def _mapped_codes(cfg: SourceConfig, num_classes: int) -> set[int]:
    if cfg.mask_values is not None:
        return {int(k) for k in cfg.mask_values}
    return set(range(num_classes))


def unmapped_codes(path: Path, cfg: SourceConfig, num_classes: int) -> list[int]:
    """Codes in an index mask that neither ``data.mask_values`` nor the class range maps (sorted).

    ``IGNORE_INDEX`` (255) counts as mapped: it is the usual "unlabelled" code. RGB masks: [] (their
    unknown colours are refused by the decoder itself, with the colours named).
    """
    if cfg.mask_encoding == "rgb":
        return []
    raw = read_mask_pixels(path, rgb=False)
    codes = {int(v) for v in np.unique(raw)}
    return sorted(codes - _mapped_codes(cfg, num_classes) - {IGNORE_INDEX})


def sample_masks(
    records: Sequence[Record], root: str | Path, cfg: SourceConfig, num_classes: int, count: int = 8
) -> MaskSample:
    """Decode ``count`` masks spread over the records; note unmapped codes and masks with no label."""
    root = Path(root)
    pairs = [r for r in records if r.mask_path]
    if not pairs:
        return MaskSample()
    picks = sorted({int(i) for i in np.linspace(0, len(pairs) - 1, min(count, len(pairs)))})
    found = MaskSample()
    try:
        decoder = MaskDecoder(cfg, root, num_classes)
    except ResnetAppsError as error:
        found.errors.append(str(error))
        return found
    for i in picks:
        path = root / str(pairs[i].mask_path)
        try:
            codes = unmapped_codes(path, cfg, num_classes)
            decoded = decoder.read(path)
        except ResnetAppsError as error:
            found.errors.append(str(error))
            continue
        found.files += 1
        if codes:
            found.unmapped[str(path)] = codes
        if decoded.size and bool((decoded == IGNORE_INDEX).all()):
            found.unlabelled.append(str(path))
    return found


def unmapped_values_text(paths: Sequence[Path], cfg: SourceConfig, num_classes: int) -> str:
    """``{10, 30, 50}``: the unmapped codes of a few mask files (for an error message), or ``{}``."""
    codes: set[int] = set()
    for path in paths:
        try:
            codes |= set(unmapped_codes(path, cfg, num_classes))
        except (ResnetAppsError, OSError):
            continue
    shown = sorted(codes)[:_SHOWN]
    more = ", ..." if len(codes) > _SHOWN else ""
    return "{" + ", ".join(map(str, shown)) + more + "}"
