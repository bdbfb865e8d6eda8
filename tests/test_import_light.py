"""Start-up stays light: ``import resnet_apps`` pulls in neither torch, matplotlib nor the hub client."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.subprocess  # each case starts a fresh interpreter

REPO = Path(__file__).resolve().parents[1]


def _imported_after(statement: str, modules: list[str]) -> list[str]:
    """Run ``statement`` in a fresh interpreter; return which of ``modules`` ended up in sys.modules."""
    code = f"import sys\n{statement}\nprint(','.join(m for m in {modules!r} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return [m for m in result.stdout.strip().split(",") if m]


HEAVY = ["torch", "timm", "matplotlib", "huggingface_hub"]


@pytest.mark.parametrize(
    ("statement", "forbidden"),
    [
        ("import resnet_apps", HEAVY),  # the lazy exports resolve on first use only
        ("import resnet_apps.errors", HEAVY),
        # the offline path of `resnet-apps weights fetch` must not pay for torch before failing
        ("import resnet_apps.weights.resolve, resnet_apps.weights.store, resnet_apps.cli.weights", HEAVY),
    ],
)
def test_light_imports(statement: str, forbidden: list[str]) -> None:
    assert _imported_after(statement, forbidden) == []


@pytest.mark.parametrize("module", ["resnet_apps.io", "resnet_apps.report", "resnet_apps.recipe"])
def test_torch_free_layers_do_not_import_torch(module: str) -> None:
    # `import *` resolves every export, also those a package resolves lazily; the static twin of this check
    # (tests/test_import_graph.py) also sees imports made inside functions
    assert _imported_after(f"from {module} import *", ["torch"]) == []
