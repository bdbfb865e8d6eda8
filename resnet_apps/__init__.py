"""resnet_apps: fine-tune ResNets on DICOM chest X-rays and multispectral GeoTIFFs.

Three lines bring a backbone into your own project::

    from resnet_apps import create_backbone
    backbone = create_backbone("resnet50", in_chans=13, weights="imagenet")
    features = backbone(x)  # 4 maps at strides 4, 8, 16, 32

The public names are imported lazily so that ``import resnet_apps.io`` (numpy, pydicom, rasterio)
never pulls in torch, and ``import resnet_apps`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it (a literal table, resolved on first use)
_LAZY = {
    "create_backbone": "resnet_apps.models.backbones",
    "list_backbones": "resnet_apps.models.backbones",
    "backbone_info": "resnet_apps.models.backbones",
    "build_model": "resnet_apps.models.heads",
    "load_run": "resnet_apps.models.checkpoint",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover
    from resnet_apps.models.backbones import backbone_info as backbone_info
    from resnet_apps.models.backbones import create_backbone as create_backbone
    from resnet_apps.models.backbones import list_backbones as list_backbones
    from resnet_apps.models.checkpoint import load_run as load_run
    from resnet_apps.models.heads import build_model as build_model


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'resnet_apps' has no attribute {name!r}")
