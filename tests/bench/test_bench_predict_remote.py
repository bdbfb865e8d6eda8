"""``bench predict --remote`` serves its COG over loopback HTTP and reports the remote figures beside the local ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.subprocess
@pytest.mark.slow
def test_bench_predict_remote_reports_bytes_against_file_and_blocks(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    command = [
        sys.executable,
        "-m",
        "resnet_apps",
        "bench",
        "predict",
        "--size",
        "512",
        "--small",
        "0",
        "--remote",
    ]
    command += ["--bands", "3", "--classes", "2", "--tile", "128", "--block", "256", "--forward-tiles", "2"]
    command += [
        "--max-seconds",
        "0",
        "--threads",
        "1",
        "--workdir",
        str(tmp_path / "work"),
        "--json",
        str(out),
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    remote = json.loads(out.read_text())["remote"]
    assert remote["complete"]
    # GDAL's count of what it downloaded is exactly what the server sent (the bare forward reads hit the cache)
    assert remote["bytes_read"] == remote["bytes_served"] > 0
    # a whole-scene prediction fetches its full-resolution tiles about once (plus the header), never overviews
    assert 1.0 <= remote["bytes_read_to_blocks"] <= 1.1
    assert remote["bytes_read_to_file"] <= 1.0  # 512 px: one 512 px tile and no overview, so the whole file
    assert remote["remote_tiles_per_s"] > 0 and remote["local_tiles_per_s"] > 0
    assert remote["remote_peak_rss_mb"] > 100 and remote["local_peak_rss_mb"] > 100
    assert "remote (loopback HTTP COG)" in done.stdout
