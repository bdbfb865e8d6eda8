"""bench decode times the first epoch's shard build over DICOM films with 1 and more processes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from dicom_fixtures import make_dicom

from resnet_apps.cli import main


def test_bench_decode_times_each_worker_count_and_lists_unreadable_films(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    films = tmp_path / "data" / "dicom_radiographs" / "chest"
    films.mkdir(parents=True)
    ramp = (np.arange(48 * 40, dtype=np.uint16).reshape(48, 40) * 3) % 4000
    make_dicom(films / "a.dcm", ramp, window=(2000.0, 4000.0))
    make_dicom(films / "b.dcm", ramp[::-1].copy(), window=(2000.0, 4000.0))
    (films / "broken.dcm").write_bytes(b"DICM but not really")
    out = tmp_path / "decode.json"
    args = ["bench", "decode", "--data", str(tmp_path / "data"), "--copies", "3", "--size", "16"]
    assert main([*args, "--workers", "1,2", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["films"] == ["chest/a.dcm", "chest/b.dcm"] and figures["copies"] == 3
    assert len(figures["skipped"]) == 1 and figures["skipped"][0].startswith("chest/broken.dcm")
    assert [row["workers"] for row in figures["rows"]] == [1, 2]
    for row in figures["rows"]:  # 6 decodes each
        assert row["seconds"] > 0 and row["films_per_s"] == pytest.approx(6 / row["seconds"], rel=0.05)
    assert figures["rows"][0]["speedup"] == 1.0
    assert figures["rows"][1]["speedup"] == pytest.approx(
        figures["rows"][1]["films_per_s"] / figures["rows"][0]["films_per_s"], rel=0.02
    )
    text = capsys.readouterr().out
    assert "2 films x 3 copies = 6 decodes" in text and "left out (no decoder): chest/broken.dcm" in text


def test_bench_decode_without_films_says_where_to_point_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "dicom_radiographs").mkdir()
    assert main(["bench", "decode", "--data", str(tmp_path)]) == 2
    assert "fix: pass --data" in capsys.readouterr().out
