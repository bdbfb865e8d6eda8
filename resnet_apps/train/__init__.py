"""Training: the loop, its setup, datasets, resume state, DDP, evaluation and the final report.

``from resnet_apps.train import train`` works; the name is resolved lazily so that importing a torch-free
helper such as :mod:`resnet_apps.train.rundir` does not pull in torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["train", "evaluate_run"]

_LAZY = {"train": "resnet_apps.train.loop", "evaluate_run": "resnet_apps.train.evaluate_run"}

if TYPE_CHECKING:  # pragma: no cover
    from resnet_apps.train.evaluate_run import evaluate_run
    from resnet_apps.train.loop import train


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'resnet_apps.train' has no attribute {name!r}")
