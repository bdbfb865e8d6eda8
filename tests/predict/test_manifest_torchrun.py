"""torchrun --nproc_per_node=2 over a manifest of 4 scenes: 4 valid COG maps, each written once by one rank;
after a rank is killed mid-run, the same command finishes the rest and leaves finished scenes alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import rasterio
from scene_fixtures import CLASSES, make_scene, make_segmentation_run

from resnet_apps.cli import main
from resnet_apps.io.cog_check import check_map
from resnet_apps.predict.scene_records import DONE

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _torchrun(run: Path, manifest: Path, out: Path) -> list[dict[str, Any]]:
    """The command a user runs on one node; returns the per-scene JSON lines of both ranks."""
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "resnet_apps", "predict", str(run), "--manifest", str(manifest), "--out", str(out),
         "--tile", "64", "--overlap", "0", "--no-progress"],
        env=ENV, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return [line for line in lines if "key" in line]


@pytest.mark.torchrun
@pytest.mark.subprocess
def test_two_ranks_predict_four_scenes_once_and_a_rerun_after_a_killed_rank_redoes_only_its_scenes(
    tmp_path: Path,
) -> None:
    run = make_segmentation_run(tmp_path / "run")
    scenes = [make_scene(tmp_path / "scenes" / f"scene{i}.tif", seed=i) for i in range(4)]
    manifest = tmp_path / "scenes.txt"
    manifest.write_text(
        "# four scenes, relative to this file\n" + "".join(f"scenes/{s.name}\n" for s in scenes)
    )
    out = tmp_path / "out"

    first = _torchrun(run, manifest, out)
    keys = [f"scene{i}" for i in range(4)]
    assert sorted(line["key"] for line in first) == keys and {line["action"] for line in first} == {
        "predicted"
    }
    # the sorted manifest dealt round robin: rank 0 takes scenes 0 and 2, rank 1 scenes 1 and 3
    by_rank = {shard: sorted(x["key"] for x in first if x["shard"] == shard) for shard in ("0/2", "1/2")}
    assert by_rank == {"0/2": ["scene0", "scene2"], "1/2": ["scene1", "scene3"]}
    for key, scene in zip(keys, scenes, strict=True):
        done = json.loads((out / key / DONE).read_text())
        assert done["worker"]["shard"] == ("0/2" if key in by_rank["0/2"] else "1/2")
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

    # rank 1 killed: scene1 during its COG copy (temp file left, done.json gone), scene3 before its rename
    (out / "scene1" / DONE).unlink()
    (out / "scene1" / ".scene1_class.tif.k1ll3d.tmp").write_bytes(b"half a COG")
    for name in ("scene3_class.tif", "scene3_class.tif.aux.xml", DONE):
        (out / "scene3" / name).unlink()
    kept = {k: (out / k / DONE).read_bytes() for k in ("scene0", "scene2")}
    mtimes = {k: (out / k / DONE).stat().st_mtime_ns for k in kept}

    second = _torchrun(run, manifest, out)
    actions = {line["key"]: line["action"] for line in second}
    assert actions == {"scene0": "skipped", "scene1": "predicted", "scene2": "skipped", "scene3": "predicted"}
    assert {k: (out / k / DONE).read_bytes() for k in kept} == kept  # finished scenes were not redone
    assert {k: (out / k / DONE).stat().st_mtime_ns for k in kept} == mtimes
    assert not list((out / "scene1").glob(".*"))
    assert main(["predict", "summarize", str(out)]) == 0
