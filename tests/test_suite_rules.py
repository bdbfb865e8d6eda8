"""The rules tests/conftest.py enforces on the suite itself, checked by running pytest on a tiny suite.

A test that uses the ``shared_data`` fixture carries the ``shared_data`` marker, and once the real data is
present a skip of such a test fails the run when RESNET_APPS_REQUIRE_SHARED_DATA=1 (set by ``make test`` and
``.ci/run``) or CI=true, also under pytest-xdist as ``make test`` runs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.subprocess

SUITE = """
import pytest

def test_uses_data(shared_data):
    pytest.skip("pretend its folder is missing")

def test_plain():
    assert True
"""


def _pytest(folder: Path, data: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"CI", "RESNET_APPS_REQUIRE_SHARED_DATA"}}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", *args],
        cwd=folder,
        env={**clean, "RESNET_APPS_SHARED_DATA": str(data), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture()
def suite(tmp_path: Path) -> Path:
    folder = tmp_path / "suite"
    folder.mkdir()
    shutil.copy(Path(__file__).with_name("conftest.py"), folder / "conftest.py")
    (folder / "pytest.ini").write_text("[pytest]\nmarkers = shared_data\n", encoding="utf-8")
    (folder / "test_tiny.py").write_text(SUITE, encoding="utf-8")
    return folder


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    (root / "SOURCES.md").write_text("# stand-in\n", encoding="utf-8")
    return root


def test_the_fixture_marks_its_tests(suite: Path, data: Path) -> None:
    done = _pytest(suite, data, "--co", "-q", "-m", "shared_data")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "test_tiny.py::test_uses_data" in done.stdout and "test_plain" not in done.stdout


def test_a_skip_with_data_present_fails_when_required(suite: Path, data: Path) -> None:
    done = _pytest(suite, data, RESNET_APPS_REQUIRE_SHARED_DATA="1")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAILED: shared_data tests skipped" in done.stdout
    assert "test_uses_data: Skipped: pretend its folder is missing" in done.stdout
    assert _pytest(suite, data, CI="true").returncode == 1


def test_a_skip_with_data_present_only_warns_otherwise(suite: Path, data: Path) -> None:
    done = _pytest(suite, data)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "warning: shared_data tests skipped" in done.stdout


def test_without_data_a_skip_is_a_skip(suite: Path, tmp_path: Path) -> None:
    done = _pytest(suite, tmp_path / "absent", RESNET_APPS_REQUIRE_SHARED_DATA="1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed, 1 skipped" in done.stdout and "real data not found" in done.stdout


def test_the_rule_holds_under_xdist(suite: Path, data: Path) -> None:
    done = _pytest(suite, data, "-n", "2", RESNET_APPS_REQUIRE_SHARED_DATA="1")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "test_uses_data: Skipped: pretend its folder is missing" in done.stdout
