"""`resnet-apps predict RUN --manifest FILE --shard i/N` and `predict summarize` in one process (a real model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scene_fixtures import make_scene, make_segmentation_run

from resnet_apps.cli import main
from resnet_apps.predict.scene_records import DONE


def test_two_array_tasks_cover_the_manifest_and_summarize_gates_on_completion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = make_segmentation_run(tmp_path / "run")
    scenes = [make_scene(tmp_path / f"scene{i}.tif", seed=i) for i in range(2)]
    manifest = tmp_path / "scenes.txt"
    manifest.write_text("".join(f"{s}\n" for s in scenes))
    out = tmp_path / "out"
    task = ["predict", str(run), "--manifest", str(manifest), "--out", str(out), "--tile", "64", "--overlap", "0",
            "--probabilities", "uint8", "--no-progress"]  # fmt: skip

    assert main([*task, "--shard", "1/2"]) == 0  # the second array task runs first: order does not matter
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert lines[0] == {**lines[0], "shard": "1/2", "key": "scene1", "action": "predicted"}
    assert lines[-1]["worker"] == {"shard": "1/2", "manifest_entries": 2, "share": 1, "predicted": 1,
                                   "skipped": 0, "failed": 0}  # fmt: skip
    done = json.loads((out / "scene1" / DONE).read_text())
    assert {o["role"] for o in done["outputs"]} == {"class", "probabilities", "class_names"}
    for name in ("scene1_class.tif", "scene1_prob.tif"):  # both maps passed the COG validator
        assert done["validation"][name]["is_valid"] is True and done["validation"][name]["errors"] == []
    assert done["validation"]["scene1_prob.tif"]["overview_resampling"] == "AVERAGE"

    assert main(["predict", "summarize", str(out)]) == 1  # scene0 not done yet: the pipeline must wait
    assert "1 done, 0 failed, 1 missing" in capsys.readouterr().out
    assert main([*task, "--shard", "0/2"]) == 0
    assert main(["predict", "summarize", str(out)]) == 0
    assert "2 done, 0 failed, 0 missing" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--shard", "2/2"], "INDEX must be in 0..1 (shards are 0-based)"),  # a 1-based array task id
        (["--shard", "two"], "expected INDEX/COUNT such as 0/4"),
    ],
)
def test_a_bad_shard_is_refused_before_the_model_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    manifest = tmp_path / "scenes.txt"
    manifest.write_text("a.tif\n")
    # no run directory at all: the shard is checked first, so its error is the one reported
    args = [
        "predict",
        str(tmp_path / "no_run"),
        "--manifest",
        str(manifest),
        "--out",
        str(tmp_path / "o"),
        *extra,
    ]
    assert main(args) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["predict", "RUN", "--out", "o"], "give INPUTs, --manifest FILE or --stac API"),  # none
        (["predict", "RUN", "x.tif", "--manifest", "m.txt", "--out", "o"], "give INPUTs, --manifest"),
        (["predict", "RUN", "x.tif", "--shard", "0/2", "--out", "o"], "--shard i/N splits a --manifest"),
    ],
)
def test_inputs_and_manifest_are_exclusive(args: list[str], message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        main(args)
