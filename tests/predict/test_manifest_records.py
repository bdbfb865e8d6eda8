"""A manifest run's bookkeeping: done.json, skip what is done, redo what is broken, record failures, summarize.

The predictor here writes a real class map with the project's COG writer (no model: fast), so the records,
the hashes and the COG validator all see real files.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scene_fixtures import CLASSES, make_scene

from resnet_apps.cli import main
from resnet_apps.errors import GeoTiffError
from resnet_apps.io import open_geotiff_writer, read_geotiff
from resnet_apps.predict.manifest import ManifestEntry, Shard, manifest_entries, read_manifest_copy
from resnet_apps.predict.manifest_run import CheckpointInfo, run_manifest, scene_predictor
from resnet_apps.predict.scene_records import DONE, FAILED, scene_status, summarize

CKPT = CheckpointInfo(path="/runs/a/best.safetensors", sha256="a" * 64, meta_sha256="b" * 64)


class FakePredictor:
    """Writes ``<key>_class.tif`` (class k = column band mean's bucket) the way predict_scene does."""

    def __init__(self, fail: set[str] | None = None, legend: bool = True) -> None:
        self.calls: list[str] = []
        self.fail = fail or set()
        self.legend = legend

    def __call__(self, entry: ManifestEntry, scene_dir: Path) -> Mapping[str, Any]:
        self.calls.append(entry.key)
        if entry.key in self.fail:
            raise GeoTiffError(f"{entry.source}: truncated file; fix: download it again")
        data, meta = read_geotiff(entry.source)
        like = dataclasses.replace(meta, valid=None)
        classes = (data[0] // 86).astype(np.uint8)[None]
        path = scene_dir / f"{entry.key}_class.tif"
        with open_geotiff_writer(
            path, like=like, count=1, dtype="uint8", nodata=255, band_names=["class"],
            legend=list(CLASSES) if self.legend else None,
        ) as writer:  # fmt: skip
            writer.write(classes)
        return {
            "class_path": path,
            "prob_path": None,
            "complete": True,
            "crs": like.crs,
            "transform": list(like.transform),
            "class_nodata": 255,
            "classes": list(CLASSES),
            "shape": classes.shape[1:],
        }


def _entries(tmp_path: Path, n: int = 4) -> list[ManifestEntry]:
    return manifest_entries([str(make_scene(tmp_path / "scenes" / f"s{i}.tif", i)) for i in range(n)])


def _run(
    entries: list[ManifestEntry], out: Path, predictor: Callable, ckpt: CheckpointInfo = CKPT
) -> list[str]:
    """One worker over everything; returns the actions in entry order."""
    report = run_manifest(entries, out, predictor, checkpoint=ckpt, shard=Shard(0, 1))
    return [o.action for o in report.outcomes]


def _done_mtimes(out: Path, entries: list[ManifestEntry]) -> dict[str, int]:
    return {e.key: (out / e.key / DONE).stat().st_mtime_ns for e in entries if (out / e.key / DONE).exists()}


def test_done_json_records_input_checkpoint_outputs_and_the_validators_verdict(tmp_path: Path) -> None:
    entries = _entries(tmp_path, 2)
    out = tmp_path / "out"
    assert _run(entries, out, FakePredictor()) == ["predicted", "predicted"]
    done = json.loads((out / "s0" / DONE).read_text())
    scene = Path(entries[0].source)
    assert done["input"]["source"] == str(scene) and done["input"]["bytes"] == scene.stat().st_size
    assert done["input"]["mtime_ns"] == scene.stat().st_mtime_ns and len(done["input"]["sha256"]) == 64
    assert done["checkpoint"] == CKPT.to_dict()
    files = {o["file"]: o for o in done["outputs"]}
    assert set(files) == {"s0_class.tif", "s0_class.tif.aux.xml"}  # the map and its category names
    from resnet_apps.checksum import sha256_file

    assert files["s0_class.tif"]["sha256"] == sha256_file(out / "s0" / "s0_class.tif")
    verdict = done["validation"]["s0_class.tif"]
    assert verdict["is_valid"] is True and verdict["errors"] == [] and verdict["cog_errors"] == []
    assert verdict["class_names"] == list(CLASSES) and verdict["overview_resampling"] == "MODE"
    assert done["timings"]["started"] < done["timings"]["finished"] and done["worker"]["shard"] == "0/1"
    assert read_manifest_copy(out / "manifest.json") == entries


def test_a_rerun_skips_done_scenes_without_calling_the_predictor(tmp_path: Path) -> None:
    entries, out = _entries(tmp_path), tmp_path / "out"
    _run(entries, out, FakePredictor())
    before = _done_mtimes(out, entries)
    again = FakePredictor()
    assert _run(entries, out, again) == ["skipped"] * 4
    assert again.calls == [] and _done_mtimes(out, entries) == before


def _remove_output(d: Path) -> None:
    (d / "s1_class.tif").unlink()


def _corrupt_output(d: Path) -> None:
    data = bytearray((d / "s1_class.tif").read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes: only the sha256 tells
    (d / "s1_class.tif").write_bytes(bytes(data))


def _killed_during_conversion(d: Path) -> None:
    # a SIGKILL inside the COG copy of a redo: atomic_path's temporary left, done.json already gone
    (d / ".s1_class.tif.x1y2z3.tmp").write_bytes(b"partial")
    (d / DONE).unlink()


def _temp_beside_a_done_json(d: Path) -> None:
    (d / ".s1_class.tif.partial.tif").write_bytes(b"partial")


def _garbled_done_json(d: Path) -> None:
    (d / DONE).write_text("[1, 2")


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_remove_output, "output s1_class.tif is missing"),  # killed before the rename
        (_corrupt_output, "sha256 differs"),  # a map changed after it was recorded
        (_killed_during_conversion, "interrupted: no done.json"),  # killed rank: temp file, no done.json
        (_temp_beside_a_done_json, "temporary file .s1_class.tif.partial.tif"),  # leftover of a killed writer
        (_garbled_done_json, "done.json is not a JSON object"),  # a truncated record
    ],
)
def test_a_broken_scene_is_redone_and_only_it(
    tmp_path: Path, damage: Callable[[Path], None], reason: str
) -> None:
    entries, out = _entries(tmp_path), tmp_path / "out"
    _run(entries, out, FakePredictor())
    damage(out / "s1")
    status = scene_status(out / "s1", "s1", entry=entries[1])
    assert status.state == "broken" and reason in status.reason
    before = _done_mtimes(out, entries)
    again = FakePredictor()
    assert _run(entries, out, again) == ["skipped", "predicted", "skipped", "skipped"]
    assert again.calls == ["s1"]
    after = _done_mtimes(out, entries)
    assert {k: after[k] for k in ("s0", "s2", "s3")} == {k: before[k] for k in ("s0", "s2", "s3")}
    assert not [p for p in (out / "s1").iterdir() if p.name.startswith(".")]  # leftovers cleaned
    assert scene_status(out / "s1", "s1", entry=entries[1]).state == "done"


def test_a_changed_input_or_another_checkpoint_makes_a_scene_stale(tmp_path: Path) -> None:
    entries, out = _entries(tmp_path, 2), tmp_path / "out"
    _run(entries, out, FakePredictor())
    os.utime(entries[0].source, ns=(1, 1))  # the input was replaced
    again = FakePredictor()
    assert _run(entries, out, again) == ["predicted", "skipped"]
    other = dataclasses.replace(CKPT, sha256="c" * 64)
    status = scene_status(out / "s1", "s1", entry=entries[1], checkpoint_sha256=other.sha256)
    assert status.state == "broken" and "another checkpoint" in status.reason
    assert _run(entries, out, FakePredictor(), ckpt=other) == ["predicted", "predicted"]


def test_a_failed_scene_is_recorded_the_others_finish_and_a_rerun_retries_it(tmp_path: Path) -> None:
    entries, out = _entries(tmp_path), tmp_path / "out"
    assert _run(entries, out, FakePredictor(fail={"s2"})) == ["predicted", "predicted", "failed", "predicted"]
    failed = json.loads((out / "s2" / FAILED).read_text())
    assert failed["error"] == {"type": "GeoTiffError", "message": f"{entries[2].source}: truncated file; fix: "
                               "download it again"}  # fmt: skip
    assert not (out / "s2" / DONE).exists()
    retry = FakePredictor()
    assert _run(entries, out, retry) == ["skipped", "skipped", "predicted", "skipped"] and retry.calls == [
        "s2"
    ]
    assert not (out / "s2" / FAILED).exists() and (out / "s2" / DONE).exists()


def test_a_map_that_fails_validation_is_a_failure_not_a_done_scene(tmp_path: Path) -> None:
    entries, out = _entries(tmp_path, 1), tmp_path / "out"
    assert _run(entries, out, FakePredictor(legend=False)) == ["failed"]
    error = json.loads((out / "s0" / FAILED).read_text())["error"]
    assert error["type"] == "MapValidationError"
    assert "class-name tags" in error["message"] and "not palette" in error["message"]


def test_an_unreachable_remote_entry_is_recorded_as_failed_and_the_others_go_on(tmp_path: Path) -> None:
    # a STAC item URL on a closed loopback port: the real predictor's reader fails, the failure is recorded
    entries = manifest_entries(["http://127.0.0.1:9/v1/collections/s2/items/S2B_1"])
    out = tmp_path / "out"
    predictor = scene_predictor(model=None, meta={"preprocessing": {"bands": ["B04"]}})
    assert _run(entries, out, predictor) == ["failed"]
    error = json.loads((out / "S2B_1" / FAILED).read_text())["error"]
    assert "127.0.0.1:9" in error["message"]


def test_summarize_lists_done_failed_and_missing_scenes(tmp_path: Path) -> None:
    entries, out = _entries(tmp_path, 5), tmp_path / "out"
    _run(entries[:4], out, FakePredictor(fail={"s1"}))
    (out / "s3" / "s3_class.tif").unlink()  # broken after it was done
    summary = summarize(out, entries)
    assert [s.key for s in summary.done] == ["s0", "s2"]
    assert [(s.key, s.reason) for s in summary.failed] == [
        ("s1", f"GeoTiffError: {entries[1].source}: truncated file; fix: download it again")
    ]
    assert [(s.key, s.reason) for s in summary.missing] == [
        ("s3", "output s3_class.tif is missing"),
        ("s4", ""),  # never started
    ]
    assert not summary.complete
    # without a manifest: the copy the workers wrote (the first 4 entries)
    assert [s.key for s in summarize(out).missing] == ["s3"]


def test_summarize_command_exit_code_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    entries, out = _entries(tmp_path, 3), tmp_path / "out"
    manifest = tmp_path / "scenes.txt"
    manifest.write_text("".join(f"{e.source}\n" for e in entries))
    _run(entries[:2], out, FakePredictor())
    report = tmp_path / "summary.json"
    assert main(["predict", "summarize", str(out), "--manifest", str(manifest), "--json", str(report)]) == 1
    printed = capsys.readouterr().out
    assert "2 done, 0 failed, 1 missing" in printed and f"missing  s2  {entries[2].source}" in printed
    data = json.loads(report.read_text())
    assert data["complete"] is False and data["counts"] == {"done": 2, "failed": 0, "missing": 1}
    _run(entries, out, FakePredictor())
    assert main(["predict", "summarize", str(out), "--manifest", str(manifest), "--no-verify"]) == 0
