"""`resnet-apps weights verify` without --dir checks the default store folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from resnet_apps.cli import main


def test_verify_defaults_to_the_fetch_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RESNET_APPS_WEIGHTS_DIR", str(tmp_path))
    assert main(["weights", "verify"]) == 0
    assert capsys.readouterr().out.strip().endswith(f"0 file(s) verified in {tmp_path}")
