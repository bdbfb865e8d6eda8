"""Predict this worker's share of a scene manifest: skip what is done, redo what is broken, record failures.

``run_manifest(entries, out, predictor, checkpoint=..., shard=...)`` walks ``shard.take(entries)`` in order
and calls :func:`predict_entry` on each. One scene is one call of the **predictor**, the single seam
between bookkeeping and pixels: ``predictor(entry, scene_dir) -> predict_scene's result dict``.
:func:`scene_predictor` builds the one for local GeoTIFFs; a predictor that resolves URLs or STAC items
(remote COG reading, asset stacking) is passed the same way and the bookkeeping does not change.

Per scene (``OUT/<key>/``): the records of an earlier try are removed first, the maps are written by
``predict_scene`` (atomic renames), each map is checked by ``io.cog_check.check_map`` (an invalid map is a
failure), outputs and local input are hashed, and ``done.json`` is written last. Any exception of one
scene becomes its ``failed.json`` and the loop goes on; only KeyboardInterrupt / SystemExit stop it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnet_apps.checksum import sha256_file
from resnet_apps.errors import MapValidationError, ScenePredictionError
from resnet_apps.io.atomic import atomic_write_text
from resnet_apps.io.cog_check import check_map
from resnet_apps.models.checkpoint import find_checkpoint
from resnet_apps.predict.manifest import MANIFEST_COPY, ManifestEntry, Shard, manifest_copy
from resnet_apps.predict.scene_records import (
    clear_scene,
    input_identity,
    now_iso,
    output_record,
    scene_status,
    worker_info,
    write_done,
    write_failed,
)

ScenePredictor = Callable[[ManifestEntry, Path], Mapping[str, Any]]
# result keys copied into done.json's "scene" (the rest are timings and paths recorded elsewhere)
_SCENE_FACTS = ("shape", "tiles", "tiles_total", "tiles_forwarded", "tiles_per_s", "redundant_tile_factor")


@dataclass(frozen=True)
class CheckpointInfo:
    """The checkpoint every map of a run came from: its files and their sha256."""

    path: str
    sha256: str  # of the .safetensors (the weights)
    meta_sha256: str  # of the .json (classes, preprocessing, operating point)

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "sha256": self.sha256, "meta_sha256": self.meta_sha256}


def checkpoint_info(run_dir: str | Path, which: str = "best") -> CheckpointInfo:
    """Hash checkpoint ``which`` of a run directory (or a checkpoint stem) once per process."""
    stem = find_checkpoint(run_dir, which)
    weights = stem.with_suffix(".safetensors")
    return CheckpointInfo(
        str(weights.resolve()), sha256_file(weights), sha256_file(stem.with_suffix(".json"))
    )


def scene_predictor(
    model: Any, meta: Any, *, resolution: float | None = None, **options: Any
) -> ScenePredictor:
    """The predictor of every manifest entry kind, one scene into ``scene_dir``.

    A local GeoTIFF or a remote COG URL goes to ``predict_scene(model, meta, entry.source, scene_dir,
    **options)`` (a URL is read through range requests, :mod:`resnet_apps.predict.remote`); a STAC item
    (a ``.json`` file or an item URL) to :func:`resnet_apps.predict.stac_scene.predict_item`, which stacks
    the assets the checkpoint's bands need onto one grid (``resolution``: its spacing; None: the
    checkpoint's ground resolution, else the finest asset's). What a remote scene was read from goes into
    the result's ``source_info`` (the URL and bytes fetched; the item id and asset hrefs), which
    :func:`predict_entry` copies into ``done.json``.
    """
    from resnet_apps.predict.scene import predict_scene
    from resnet_apps.predict.stac_scene import predict_item

    def predict(entry: ManifestEntry, scene_dir: Path) -> Mapping[str, Any]:
        if entry.kind == "stac_item":
            result = predict_item(model, meta, entry.source, scene_dir, resolution=resolution, **options)
            return {**result, "source_info": {"kind": "stac_item", **result["stac"]}}
        result = predict_scene(model, meta, entry.source, scene_dir, **options)
        if entry.kind == "url":
            return {
                **result,
                "source_info": {"kind": "url", "url": entry.source, "bytes_read": result["bytes_read"]},
            }
        return result

    return predict


@dataclass(frozen=True)
class SceneOutcome:
    """What :func:`predict_entry` did with one entry."""

    key: str
    action: str  # "predicted", "skipped" (already done), "failed"
    seconds: float
    reason: str = ""  # why it was redone (broken), or the error of a failure

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "action": self.action,
            "seconds": round(self.seconds, 3),
            "reason": self.reason,
        }


def predict_entry(
    entry: ManifestEntry,
    out_dir: Path,
    predictor: ScenePredictor,
    *,
    checkpoint: CheckpointInfo,
    shard: Shard,
    verify: bool = True,
) -> SceneOutcome:
    """Predict one entry into ``out_dir / entry.key`` unless it is done (see the module doc).

    Args:
        entry: the scene.
        out_dir: the run's output folder.
        predictor: ``(entry, scene_dir) -> predict_scene``-like result (``class_path``, ``prob_path``,
            ``complete``, ``crs``, ``transform``, ``class_nodata``, ``classes``; ``source_info`` if any).
        checkpoint: the checkpoint's identity (a done map of another checkpoint is redone).
        shard: this worker (recorded).
        verify: hash the outputs of done scenes before skipping them.
    """
    scene_dir = out_dir / entry.key
    begin = time.perf_counter()
    status = scene_status(
        scene_dir, entry.key, entry=entry, checkpoint_sha256=checkpoint.sha256, verify=verify
    )
    if status.state == "done":
        return SceneOutcome(entry.key, "skipped", time.perf_counter() - begin)
    started = now_iso()
    scene_dir.mkdir(parents=True, exist_ok=True)
    clear_scene(scene_dir)
    try:
        record = _predict_and_check(entry, scene_dir, predictor)
    except Exception as error:  # one scene's failure is recorded; the other scenes go on
        write_failed(scene_dir, entry, error, started, shard)
        return SceneOutcome(
            entry.key, "failed", time.perf_counter() - begin, f"{type(error).__name__}: {error}"
        )
    record["timings"] = {"started": started, **record["timings"], "finished": now_iso()}
    record["timings"]["total_s"] = time.perf_counter() - begin
    write_done(
        scene_dir,
        {"key": entry.key, "entry": entry.to_dict(), **record,
         "checkpoint": checkpoint.to_dict(), "worker": worker_info(shard)},
    )  # fmt: skip
    return SceneOutcome(entry.key, "predicted", time.perf_counter() - begin, status.reason)


def _predict_and_check(entry: ManifestEntry, scene_dir: Path, predictor: ScenePredictor) -> dict[str, Any]:
    """Predict, validate every map, hash outputs and input; the parts of done.json that describe the scene."""
    t0 = time.perf_counter()
    result = predictor(entry, scene_dir)
    t1 = time.perf_counter()
    if not result.get("complete", True):
        raise ScenePredictionError(f"{entry.source}: prediction stopped before the end of the scene")
    maps = [(Path(result["class_path"]), "class")]
    if result.get("prob_path"):
        maps.append((Path(result["prob_path"]), "probabilities"))
    validation = {}
    for path, role in maps:
        check = check_map(
            path,
            classes=result.get("classes") if role == "class" else None,
            crs=result.get("crs"),
            transform=result.get("transform"),
            nodata=result.get("class_nodata") if role == "class" else None,
        )
        validation[path.name] = {k: v for k, v in check.to_dict().items() if k != "path"}
        if not check.is_valid:
            raise MapValidationError(
                f"{path}: not a valid map: {'; '.join(check.errors)}; fix: rerun this scene (it is redone), "
                "and report the errors if they come back"
            )
    t2 = time.perf_counter()
    sidecar = maps[0][0].with_name(maps[0][0].name + ".aux.xml")  # GDAL category names of the class map
    files = [*maps, *([(sidecar, "class_names")] if sidecar.is_file() else [])]
    outputs = [output_record(path, role) for path, role in files]
    identity = input_identity(entry)
    t3 = time.perf_counter()
    record: dict[str, Any] = {
        "input": identity,
        "outputs": outputs,
        "validation": validation,
        "scene": {k: result[k] for k in _SCENE_FACTS if k in result},
        "timings": {"predict_s": t1 - t0, "validate_s": t2 - t1, "hash_s": t3 - t2},
    }
    if "source_info" in result:
        record["source_info"] = result["source_info"]  # what a remote predictor read (item id, asset hrefs)
    return record


@dataclass
class ManifestReport:
    """One worker's pass over its share."""

    shard: Shard
    entries: int  # in the whole manifest
    outcomes: list[SceneOutcome]

    def count(self, action: str) -> int:
        return sum(o.action == action for o in self.outcomes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "shard": str(self.shard),
            "manifest_entries": self.entries,
            "share": len(self.outcomes),
            "predicted": self.count("predicted"),
            "skipped": self.count("skipped"),
            "failed": self.count("failed"),
        }


def run_manifest(
    entries: Sequence[ManifestEntry],
    out_dir: str | Path,
    predictor: ScenePredictor,
    *,
    checkpoint: CheckpointInfo,
    shard: Shard,
    verify: bool = True,
    on_scene: Callable[[SceneOutcome], None] | None = None,
) -> ManifestReport:
    """Predict ``shard.take(entries)`` into ``out_dir`` (see the module doc); ``on_scene`` sees each outcome.

    Also writes ``OUT/manifest.json`` (the sorted entries and their keys; every worker writes the same text,
    atomically), which ``predict summarize OUT`` reads when no ``--manifest`` is given.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / MANIFEST_COPY, manifest_copy(entries))
    outcomes = []
    for entry in shard.take(entries):
        outcome = predict_entry(entry, out_dir, predictor, checkpoint=checkpoint, shard=shard, verify=verify)
        outcomes.append(outcome)
        if on_scene is not None:
            on_scene(outcome)
    return ManifestReport(shard, len(entries), outcomes)
