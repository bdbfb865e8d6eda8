"""Shared fixtures: where the real data lives, and a guard that keeps tests offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# ../shared/data beside the checkout; RESNET_APPS_SHARED_DATA overrides it.
SHARED_DATA = Path(os.environ.get("RESNET_APPS_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the real datasets (see its SOURCES.md); skips the test when it is absent."""
    if not (SHARED_DATA / "SOURCES.md").is_file():
        pytest.skip(f"real data not found at {SHARED_DATA} (set RESNET_APPS_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _offline_hub(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never reach a model hub: point every cache at an empty folder and declare the hub offline."""
    cache = tmp_path_factory.getbasetemp() / "hub-cache"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(cache / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(cache / "torch"))
    monkeypatch.delenv("RESNET_APPS_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("RESNET_APPS_CACHE_DIR", str(cache / "resnet_apps"))


@pytest.fixture(autouse=True)
def _hash_key(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A fixed identifier-hash key (splits by group are reproducible) and a config folder of the tests' own,
    so no test creates or reads the user's ~/.config/resnet_apps/hash.key."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.getbasetemp() / "config"))
    monkeypatch.setenv("RESNET_APPS_HASH_KEY", "resnet_apps-test-key-not-secret")
    monkeypatch.delenv("RESNET_APPS_HASH_SALT", raising=False)
