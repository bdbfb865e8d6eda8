"""torchrun --nproc_per_node=2 over a manifest of 4 scenes, with rank 1 killed mid-run: the same command run again
finishes the rest without redoing finished scenes; in the end 4 valid COG maps, each written once by the rank the
split names. (Damage without a kill, scene by scene, is tested fast in test_manifest_records.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rasterio
from scene_fixtures import CLASSES, make_scene, make_segmentation_run

from resnet_apps.cli import main
from resnet_apps.io.cog_check import check_map
from resnet_apps.predict.scene_records import DONE

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
KEYS = [f"scene{i}" for i in range(4)]


def _command(run: Path, manifest: Path, out: Path) -> list[str]:
    """The command a user runs on one node."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "-m", "resnet_apps", "predict", str(run), "--manifest", str(manifest), "--out", str(out),
            "--tile", "64", "--overlap", "0", "--no-progress"]  # fmt: skip


def _rank_pid(agent: int, rank: int) -> int:
    """The pid of torchrun worker ``rank`` among the agent's children (Linux /proc: parent pid, environment)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent == agent and f"RANK={rank}".encode() in Path(f"/proc/{pid}/environ").read_bytes().split(
                b"\0"
            ):
                return int(pid)
        except (OSError, IndexError, ValueError):
            continue  # a process that ended while we looked, or one we may not read
    raise AssertionError(f"no worker with RANK={rank} under torchrun agent {agent}")


def _run_and_kill_rank_1(command: list[str], out: Path) -> int:
    """Start torchrun; once rank 1 has finished scene1 (its first scene) and is on scene3, SIGKILL rank 1."""
    agent = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not (out / "scene1" / DONE).exists() and agent.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert agent.poll() is None, "torchrun ended before rank 1 finished a scene: nothing to kill"
        os.kill(_rank_pid(agent.pid, 1), signal.SIGKILL)  # the OOM killer, a lost GPU
        return agent.wait(timeout=120)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()


@pytest.mark.torchrun
@pytest.mark.subprocess
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the rank's pid in /proc")
def test_two_ranks_after_a_killed_rank_finish_four_valid_maps_each_written_once(tmp_path: Path) -> None:
    run = make_segmentation_run(tmp_path / "run")
    scenes = [make_scene(tmp_path / "scenes" / f"{key}.tif", seed=i) for i, key in enumerate(KEYS)]
    manifest = tmp_path / "scenes.txt"
    manifest.write_text(
        "# four scenes, relative to this file\n" + "".join(f"scenes/{s.name}\n" for s in scenes)
    )
    out = tmp_path / "out"
    command = _command(run, manifest, out)

    assert _run_and_kill_rank_1(command, out) != 0  # torchrun saw the dead rank and stopped rank 0 too
    done_before = {d.parent.name: d.read_bytes() for d in out.glob("*/done.json")}
    assert "scene1" in done_before and "scene3" not in done_before
    assert main(["predict", "summarize", str(out)]) == 1  # the gate holds while scenes are missing

    rerun = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    lines = [json.loads(x) for x in rerun.stdout.splitlines() if x.startswith('{"shard"')]
    actions = {line["key"]: line["action"] for line in lines}
    assert sorted(line["key"] for line in lines) == KEYS  # each scene handled once, by one rank
    assert {k for k, a in actions.items() if a == "skipped"} == set(done_before)  # finished: not redone
    assert {k for k, a in actions.items() if a == "predicted"} == set(KEYS) - set(done_before)
    assert {k: (out / k / DONE).read_bytes() for k in done_before} == done_before

    for key, scene in zip(KEYS, scenes, strict=True):
        done = json.loads((out / key / DONE).read_text())
        # the sorted manifest dealt round robin: rank 0 wrote scenes 0 and 2, rank 1 scenes 1 and 3
        assert done["worker"]["shard"] == ("0/2" if key in ("scene0", "scene2") else "1/2")
        verdict = done["validation"][f"{key}_class.tif"]
        assert verdict["is_valid"] is True and verdict["errors"] == [] and verdict["overviews"] == [2, 4]
        # the validator again, independently of what was recorded, against the input's grid
        with rasterio.open(scene) as src:
            crs, transform = src.crs.to_string(), list(src.transform)[:6]
        check = check_map(
            out / key / f"{key}_class.tif", classes=CLASSES, crs=crs, transform=transform, nodata=255
        )
        assert check.is_valid and check.errors == [] and check.colour_table
        with rasterio.open(out / key / f"{key}_class.tif") as cls:
            assert (cls.read(1)[:, :8] == 255).all()  # the input's nodata strip stays nodata
        assert not list((out / key).glob(".*"))  # no leftover of the killed writers
    assert main(["predict", "summarize", str(out)]) == 0
