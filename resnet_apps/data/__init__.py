"""Datasets: records, masks, transforms, splits, cache and band statistics (ARCHITECTURE.md section 4).

``build_records`` and the torch-free helpers import without torch; ``RecordDataset`` is loaded lazily so
``resnet_apps.data.stats`` (used by ``resnet-apps data stats``) does not pull in torch.
"""

from __future__ import annotations

from typing import Any

from resnet_apps.data.cache import ArrayCache, default_cache_dir
from resnet_apps.data.config import SourceConfig, as_source_config
from resnet_apps.data.loading import load_arrays
from resnet_apps.data.masks import MaskDecoder
from resnet_apps.data.preprocessing import Preprocessing
from resnet_apps.data.records import NIH_CHESTXRAY14_LABELS, Record, build_records, hash_id
from resnet_apps.data.splits import (
    check_leakage,
    find_leakage,
    group_split,
    make_split,
    spatial_groups,
    split_counts,
)
from resnet_apps.data.stats import compute_band_stats

__all__ = [
    "NIH_CHESTXRAY14_LABELS",
    "ArrayCache",
    "MaskDecoder",
    "Preprocessing",
    "Record",
    "RecordDataset",
    "SourceConfig",
    "as_source_config",
    "build_records",
    "build_transforms",
    "check_leakage",
    "compute_band_stats",
    "default_cache_dir",
    "find_leakage",
    "group_split",
    "hash_id",
    "load_arrays",
    "make_split",
    "normalization",
    "spatial_groups",
    "split_counts",
    "write_skipped",
]

_LAZY = {
    "RecordDataset": "resnet_apps.data.dataset",
    "write_skipped": "resnet_apps.data.dataset",
    "build_transforms": "resnet_apps.data.transforms",
    "normalization": "resnet_apps.data.transforms",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'resnet_apps.data' has no attribute {name!r}")
