"""``bench predict --max-seconds 0`` runs a (tiny) scene to completion and writes the figures as JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from resnet_apps.bench.predict_child import _peak_rss_mb, cpu_ticks, reset_peak_rss, steal_share
from resnet_apps.predict.tiling import count_tiles, plan_grid


@pytest.mark.subprocess
def test_bench_predict_runs_to_completion_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    command = [sys.executable, "-m", "resnet_apps", "bench", "predict", "--size", "160", "--small", "0"]
    command += ["--bands", "3", "--classes", "3", "--tile", "64", "--block", "96", "--forward-tiles", "4"]
    command += ["--bare-seconds", "0", "--repeat", "3", "--timeline", str(tmp_path / "timeline")]
    command += ["--max-seconds", "0", "--workdir", str(tmp_path / "work"), "--json", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    scene = report["scenes"][0]
    assert scene["complete"] and scene["tiles"] == scene["tiles_total"] > 4
    assert "extrapolated_full_scene_seconds" not in scene
    assert set(report["split"]) == {"read", "forward", "blend", "write"}
    assert report["split"]["forward"] > 0 and 0 < report["forward_share"] <= 1
    assert report["ratio"] > 0 and report["tiles_per_s"] > 0 and report["peak_rss_mb"] > 100
    low, high = scene["ratio_range"]  # against the faster and the slower of the two bare timings
    assert low <= scene["ratio"] <= high
    # three passes, each between two bare timings (4 in all, shared by neighbours); the median is reported
    passes = scene["passes"]
    assert len(passes) == 3
    assert [p["bare_tiles_per_s_before_after"][1] for p in passes[:2]] == [
        p["bare_tiles_per_s_before_after"][0] for p in passes[1:]
    ]
    assert scene["ratio"] == sorted(p["ratio"] for p in passes)[1]
    for p in passes:
        before, after = p["bare_tiles_per_s_before_after"]
        # from the unrounded figures: equal to 3 decimals, give or take the rounding of the inputs
        assert p["ratio"] == pytest.approx(p["tiles_per_s"] / ((before + after) / 2), abs=2e-3)
        # the hypervisor's steal over the pass and each bare timing, a share of the machine's CPU time
        assert 0 <= p["steal_share"] <= 1 and all(0 <= b <= 1 for b in p["bare_steal_share_before_after"])
    assert [p["bare_steal_share_before_after"][1] for p in passes[:2]] == [
        p["bare_steal_share_before_after"][0] for p in passes[1:]
    ]
    assert scene["steal_share"] in [p["steal_share"] for p in passes if p["ratio"] == scene["ratio"]]
    assert set(scene["background_cpu"]) == {"read", "write"}
    # CPU seconds of the reader and writer threads (the writer's rounds to 0 on this tiny scene)
    assert scene["background_cpu"]["read"] > 0 and scene["background_cpu"]["write"] >= 0
    assert scene["background_cpu"]["read"] <= scene["split"]["read"] + 0.01  # CPU within wall
    assert scene["forward_tiles_per_s_in_pass"] > 0
    # each pass's own peak (VmHWM reset before it on Linux), never above the process's lifetime peak
    assert scene["peak_rss_scope"] == ("pass" if sys.platform == "linux" else "process")
    assert scene["peak_rss_mb"] == max(p["peak_rss_mb"] for p in passes)
    assert all(100 < p["peak_rss_mb"] <= scene["peak_rss_mb_incl_bare_forward"] for p in passes)
    # one 512 px file tile holds the scene; its 2 x 2 blocks are one stripe of carried reads (predict.carry),
    # which decode it once (plain block reads: each block, 4.0) and hold it between the blocks
    assert scene["decode_factor"] == 1.0
    assert 0 < scene["carried_peak_mb"] <= 128
    # that tile reaches beyond each block's read window: decoded whole into a held array, never into a block
    assert scene["tiles_decoded"] == 1 and scene["tiles_decoded_direct"] == 0
    # 160 px, tile 64, stride 48, block 96: 2 blocks per axis read as 160 px, 3 tiles each -> 6^2 = 36 tiles
    assert scene["tiles_total"] == count_tiles(160, 160, plan_grid(64, 0.25, 96)) == 36
    assert report["redundant_tile_factor"] == round(36 * 64 * 64 / 160**2, 3)
    assert "ratio to a bare forward" in done.stdout
    # fill and drain, and the reported pass's stage intervals per thread
    assert 0 < scene["fill_seconds"] < scene["seconds"] and 0 < scene["drain_seconds"] < scene["seconds"]
    events = json.loads((tmp_path / "timeline" / "timeline_160.json").read_text())
    assert {stage for stage, *_ in events} == {"read", "forward", "blend", "write", "close"}
    assert {thread for stage, thread, *_ in events if stage == "read"} == {"scene-reader"}
    assert len([e for e in events if e[0] == "forward"]) == -(-36 // 8)  # 36 tiles in batches of 8


def test_steal_share_is_the_stolen_part_of_all_ticks_between_two_readings() -> None:
    assert steal_share((10, 1_000), (15, 1_100)) == 0.05
    assert steal_share((10, 1_000), (10, 1_000)) is None  # no tick between them: no share to give
    assert steal_share(None, (10, 1_000)) is None  # not Linux's /proc/stat
    ticks = cpu_ticks()
    if sys.platform.startswith("linux"):
        assert ticks is not None and 0 <= ticks[0] <= ticks[1]


@pytest.mark.skipif(sys.platform != "linux", reason="VmHWM and clear_refs are Linux's")
def test_reset_peak_rss_starts_a_new_window() -> None:
    """After a reset the peak is the RSS now, not the 200 MB freed before it."""
    import numpy as np

    big = np.ones(200 * 2**20 // 8)  # 200 MiB, touched
    before = _peak_rss_mb()
    del big
    assert reset_peak_rss()
    after = _peak_rss_mb()
    assert after < before - 150
