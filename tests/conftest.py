"""Shared fixtures and the rules of the suite.

- ``shared_data``: where the real data lives. Every test that asks for it carries the ``shared_data`` marker
  (added here at collection, so a new test cannot forget it) and skips when the data is absent.
- A skipped ``shared_data`` test while the data IS present means a regression turned into a skip: with
  ``RESNET_APPS_REQUIRE_SHARED_DATA=1`` (``make test`` and ``.ci/run`` set it) or ``CI=true`` the run fails.
- Tests never reach a model hub (``_offline_hub``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# ../shared/data beside the checkout; RESNET_APPS_SHARED_DATA overrides it.
SHARED_DATA = Path(os.environ.get("RESNET_APPS_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def shared_data_present() -> bool:
    """True when the real datasets are where the ``shared_data`` fixture looks (their SOURCES.md is there)."""
    return (SHARED_DATA / "SOURCES.md").is_file()


def skips_must_fail() -> bool:
    """Whether a skipped ``shared_data`` test fails the run: asked for, and the data is present."""
    asked = os.environ.get("RESNET_APPS_REQUIRE_SHARED_DATA") == "1"
    asked = asked or os.environ.get("CI", "").lower() in {"1", "true", "yes"}
    return asked and shared_data_present()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the real datasets (see its SOURCES.md); skips the test when it is absent."""
    if not shared_data_present():
        pytest.skip(f"real data not found at {SHARED_DATA} (set RESNET_APPS_SHARED_DATA)")
    return SHARED_DATA


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects, so `-m shared_data` and `-m 'not shared_data'` work
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.shared_data)


# node ids of shared_data tests that were skipped (on the xdist controller the workers' reports arrive here too)
_SKIPPED_WITH_DATA: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and "shared_data" in report.keywords and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _SKIPPED_WITH_DATA.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session: pytest.Session) -> None:
    if hasattr(session.config, "workerinput"):  # an xdist worker: the controller decides
        return
    if _SKIPPED_WITH_DATA and skips_must_fail():
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _SKIPPED_WITH_DATA or not shared_data_present():
        return
    verdict = "FAILED" if skips_must_fail() else "warning"
    terminalreporter.section(f"{verdict}: shared_data tests skipped although {SHARED_DATA} exists", red=True)
    for line in _SKIPPED_WITH_DATA:
        terminalreporter.line(line)


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
