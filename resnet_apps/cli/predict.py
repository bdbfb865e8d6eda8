"""``resnet-apps predict RUN_DIR INPUT... --out OUT`` and ``resnet-apps export RUN_DIR --format onnx|torchscript``.

What each INPUT becomes:
- a folder: every DICOM / PNG / JPEG / TIFF under it (recursively) is one CSV row in ``OUT/predictions.csv``
  (bad files in ``OUT/errors.csv``; rerunning with the same OUT resumes);
- a GeoTIFF file: a scene, streamed block by block to ``OUT/<stem>_class.tif`` (+ ``_prob.tif``; the stem is
  the whole name less ``.tif``; the class map carries a colour table and class names for QGIS) for
  segmentation models, and for classification models when it holds more than 2 x 2 chips (a class map at
  the chip stride); a chip-sized GeoTIFF is one CSV row;
- a URL of a GeoTIFF (``https://HOST/scene.tif``, ``s3://bucket/key.tif``): a scene read through HTTP range
  requests (only the blocks predicted are fetched; ``--window`` predicts part of it); the maps are local;
- a STAC Item (``item.json``, a path or URL), or every item of a STAC API search (``--stac API --collection C
  --bbox W,S,E,N --datetime 2024-06-01/2024-06-30``): the assets of the checkpoint's bands, stacked onto one
  grid, predicted to ``OUT/<item id>_class.tif`` (the maps record the item id and asset hrefs);
- any other image file (DICOM, PNG, JPEG): one CSV row;
- a DICOMweb service, ``dicomweb+https://HOST[:PORT]/dicom-web``, with ``--study UID`` (repeatable)
  and/or ``--query "ModalitiesInStudy=CR&StudyDate=20260101-"``: every image instance of those studies,
  retrieved one by one (WADO-RS), is one CSV row (hashed UIDs only); ``--store`` writes a DICOM SR per
  instance (+ a Grad-CAM secondary capture with ``--gradcam``) back into its study (STOW-RS); a rerun
  skips what is stored. A segmentation run writes OUT/masks/<image_id>.png class maps and stores a
  DICOM SEG per instance. Auth: RESNET_APPS_DICOMWEB_TOKEN, or RESNET_APPS_DICOMWEB_USER / _PASSWORD, or
  ~/.netrc (never on the command line); TLS is verified (REQUESTS_CA_BUNDLE for a private CA).
- ``--manifest scenes.txt`` instead of INPUTs: many scenes split between workers (``--shard i/N``, torchrun
  ranks), each to ``OUT/<name>/`` with a ``done.json``; ``predict summarize OUT`` lists what is done, failed
  and missing (see ``cli/predict_manifest.py``).
Preprocessing (bands, scale, mean, std, size, DICOM window) always comes from the checkpoint.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnet_apps.cli.inspect import add_budget_options
from resnet_apps.cli.predict_manifest import (
    add_manifest_options,
    manifest_plan,
    predict_manifest,
    register_summarize,
    torchrun_device,
)

if TYPE_CHECKING:  # the CLI imports model code only when a command runs
    from resnet_apps.models.meta import CheckpointMeta


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``predict`` and ``export`` to the top-level parser."""
    parser = subparsers.add_parser(
        "predict",
        help="predict GeoTIFF scenes (streamed, georeferenced COG maps) and DICOM/image folders (CSV)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "run_dir", metavar="RUN_DIR", help="run directory (or checkpoint stem) from `resnet-apps train`"
    )
    parser.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="GeoTIFF scenes (files or URLs), STAC items (.json), image files or folders, or one "
        "dicomweb+http(s)://HOST/ROOT service (none with --manifest or --stac)",
    )
    parser.add_argument(
        "--out", required=True, help="output folder (an existing one resumes folder predictions)"
    )
    parser.add_argument(
        "--probabilities",
        nargs="?",
        const="float32",
        choices=("float32", "uint8"),
        default=None,
        help="scenes: also write per-class probabilities (float32, or uint8 0..254 = 0..1)",
    )
    parser.add_argument("--overlap", type=float, default=0.25, help="tile overlap fraction in [0, 1) (0.25)")
    parser.add_argument(
        "--tile",
        type=int,
        default=None,
        help="tile side in px (segmentation: 256; classification: the checkpoint's image_size)",
    )
    parser.add_argument(
        "--block", type=int, default=1536, help="scene block side in px: bounds memory (1536)"
    )
    parser.add_argument("--batch-size", type=int, default=8, help="tiles or images per forward pass (8)")
    parser.add_argument(
        "--blend",
        choices=("gaussian", "constant"),
        default="gaussian",
        help="how overlapping tiles are blended (MONAI sliding_window_inference mode)",
    )
    parser.add_argument(
        "--no-pipeline",
        action="store_true",
        help="scenes: read and write in series with the forward pass (no threads; same maps, slower)",
    )
    parser.add_argument(
        "--readers",
        type=_at_least_one,
        default=None,
        help="scenes: blocks read at once, each in a thread (default: 1 on the CPU or a URL, up to 4 "
        "beside a GPU; same maps)",
    )
    parser.add_argument(
        "--gradcam", action="store_true", help="images: also write OUT/gradcam/<image_id>.png"
    )
    parser.add_argument(
        "--which", default="best", choices=("best", "last"), help="checkpoint of the run (best)"
    )
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1)")
    pacs = parser.add_argument_group("DICOMweb (an INPUT dicomweb+http(s)://...)")
    pacs.add_argument(
        "--study", action="append", default=[], metavar="UID", help="Study Instance UID (repeatable)"
    )
    pacs.add_argument(
        "--query", default=None, help='QIDO-RS study filters, e.g. "ModalitiesInStudy=CR&StudyDate=20260101-"'
    )
    pacs.add_argument(
        "--store", action="store_true", help="store an SR per instance (+ Grad-CAM SC with --gradcam) back"
    )
    stac = parser.add_argument_group("remote scenes and STAC")
    stac.add_argument("--stac", default=None, metavar="API", help="STAC API URL: predict every item it finds")
    stac.add_argument("--collection", action="append", default=[], help="STAC collection id (repeatable)")
    stac.add_argument("--bbox", default=None, metavar="W,S,E,N", help="STAC search box in degrees")
    stac.add_argument("--datetime", default=None, help="STAC search time, e.g. 2024-06-01/2024-06-30")
    stac.add_argument("--max-items", type=int, default=None, help="at most this many STAC items")
    stac.add_argument(
        "--resolution",
        type=float,
        default=None,
        help="STAC: grid resolution in CRS units (default: the checkpoint's ground_resolution, else the "
        "finest asset's)",
    )
    stac.add_argument(
        "--window",
        default=None,
        metavar="ROW,COL,H,W",
        help="scenes: predict only this pixel window (a remote scene fetches only its blocks)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_budget_options(parser)
    add_manifest_options(parser)
    parser.set_defaults(handler=_predict)
    register_summarize(subparsers)

    export = subparsers.add_parser(
        "export", help="export a run's model to ONNX or TorchScript with a parity check"
    )
    export.add_argument("run_dir", metavar="RUN_DIR", help="run directory (or checkpoint stem)")
    export.add_argument("--format", required=True, choices=("onnx", "torchscript"), dest="fmt")
    export.add_argument(
        "--out", default=None, help="model file or folder (default RUN_DIR/export/model.onnx|.pt)"
    )
    export.add_argument(
        "--size",
        type=int,
        default=None,
        help="input side in px (classification: image_size; segmentation: 256)",
    )
    export.add_argument("--which", default="best", choices=("best", "last"))
    export.set_defaults(handler=_export)


def _is_scene(path: Path | str, task: str, image_size: int | None) -> bool:
    """A TIFF (or a URL) is a scene for segmentation, or for classification when it holds more than 2 x 2
    chips."""
    from resnet_apps.io import read_geotiff, sniff_format
    from resnet_apps.predict.remote import gdal_env

    if isinstance(path, Path) and (not path.is_file() or sniff_format(path) != "tiff"):
        return False
    if task == "segmentation":
        return True
    with gdal_env():
        _, meta = read_geotiff(path, window=(0, 0, 1, 1))
    chip = image_size or 64
    return meta.height > 2 * chip or meta.width > 2 * chip


def _refuse_clashing_outputs(scenes: list[Path | str], out: Path) -> None:
    """Two scenes of one call must not write the same ``OUT/<stem>_class.tif`` (the second would replace it)."""
    from resnet_apps.predict.scene_maps import scene_stem

    first: dict[str, Path | str] = {}
    for scene in scenes:
        stem = scene_stem(scene)
        if stem in first:
            raise SystemExit(
                f"{scene} and {first[stem]} would both write {out / (stem + '_class.tif')}; fix: rename one, "
                "or predict them in separate calls with different --out folders"
            )
        first[stem] = scene


def _predict(args: argparse.Namespace) -> int:
    import torch

    from resnet_apps.io.geotiff import is_remote
    from resnet_apps.io.writable import check_writable, writing
    from resnet_apps.models.checkpoint import load_run
    from resnet_apps.predict.stac import is_stac_item

    if sum(map(bool, (args.inputs, args.manifest, args.stac))) != 1:
        raise SystemExit("predict: give INPUTs, --manifest FILE or --stac API (one of the three)")
    if args.shard and not args.manifest:
        raise SystemExit("--shard i/N splits a --manifest; give --manifest FILE")
    args.device = torchrun_device(args.device)  # one GPU per torchrun rank
    if args.device != "cpu" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: no CUDA device here; use --device cpu")
    gpu = torch.device(args.device)
    if gpu.type == "cuda" and gpu.index is not None and gpu.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise SystemExit(
            f"--device {args.device}: this machine has {count} GPU(s) (cuda:0..cuda:{count - 1}); under torchrun "
            f"start one rank per GPU: --nproc_per_node={count}"
        )
    dicomweb = any(str(p).startswith("dicomweb+") for p in args.inputs)
    if dicomweb and len(args.inputs) != 1:
        raise SystemExit("a dicomweb+http(s)://... INPUT is given alone; run files in another predict call")
    if dicomweb and not args.study and not args.query:
        raise SystemExit("DICOMweb: say which studies with --study UID and/or --query FILTERS")
    if not dicomweb and (args.study or args.query or args.store):
        raise SystemExit("--study, --query and --store need a dicomweb+http(s)://... INPUT")
    check_writable(args.out, "predict --out")  # before the model is loaded or any file read
    plan = manifest_plan(args) if args.manifest else None
    model, meta = load_run(args.run_dir, which=args.which, map_location=args.device)
    if plan is not None:
        return predict_manifest(args, model, meta, plan)
    if dicomweb:
        return _predict_dicomweb(args, model, meta)
    task = meta.task
    size = meta.require_preprocessing().image_size
    image_size = size if isinstance(size, int) or size is None else max(size)
    out = Path(args.out)
    items = [p for p in args.inputs if is_stac_item(p)]
    rest = [p for p in args.inputs if p not in items]
    scenes: list[Path | str] = [p for p in rest if is_remote(p) and _is_scene(p, task, image_size)]
    scenes += [Path(p) for p in rest if not is_remote(p) and _is_scene(Path(p), task, image_size)]
    images = [p for p in rest if p not in scenes and Path(p) not in scenes]
    if images and task != "classification":
        raise SystemExit(f"{images[0]}: a {task} model predicts GeoTIFF scenes only; pass .tif scenes")
    _refuse_clashing_outputs(scenes, out)
    with writing(out, "predict --out", space_only=True):
        results = _run_inputs(args, model, meta, scenes, images, out)
        results += _run_stac(args, model, meta, items, out)
    for result in results:
        print(json.dumps(result, default=str))
    return 0


def _run_inputs(
    args: argparse.Namespace,
    model: Any,
    meta: CheckpointMeta,
    scenes: list[Path | str],
    images: list[str],
    out: Path,
) -> list[dict[str, Any]]:
    """Predict every scene, then the images (one CSV); returns one summary dict per call."""
    from resnet_apps.predict.folder import predict_folder
    from resnet_apps.predict.scene import predict_scene

    results: list[dict[str, Any]] = []
    for scene in scenes:
        results.append(predict_scene(model, meta, scene, out, **_scene_options(args)))
    if images:
        results.append(
            predict_folder(
                model,
                meta,
                images,
                out,
                batch_size=args.batch_size,
                gradcam=args.gradcam,
                device=args.device,
                progress=not args.no_progress,
                frame=args.frame,
                max_pixels=args.max_pixels,
            )
        )
    return results


def _at_least_one(text: str) -> int:
    """An argparse type: a whole number of at least 1 (``--readers``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is less than 1: give at least one reader")
    return value


def _scene_options(args: argparse.Namespace) -> dict[str, Any]:
    """``predict_scene``'s keyword arguments from the command line."""
    window = None
    if getattr(args, "window", None):
        try:
            row, col, height, width = (int(v) for v in args.window.split(","))
        except ValueError:
            raise SystemExit(f"--window {args.window!r}: expected ROW,COL,HEIGHT,WIDTH in pixels") from None
        window = (row, col, height, width)
    return {
        "tile": args.tile,
        "overlap": args.overlap,
        "block": args.block,
        "batch_size": args.batch_size,
        "blend": args.blend,
        "probabilities": args.probabilities,
        "device": args.device,
        "progress": not args.no_progress,
        "pipeline": not getattr(args, "no_pipeline", False),
        "readers": getattr(args, "readers", None),
        "window": window,
    }


def _run_stac(
    args: argparse.Namespace, model: Any, meta: CheckpointMeta, items: list[str], out: Path
) -> list[dict[str, Any]]:
    """Predict STAC items given as INPUTs, then those of the ``--stac`` search; one summary per item."""
    from resnet_apps.predict.stac import parse_bbox, read_item, search_items
    from resnet_apps.predict.stac_scene import predict_item

    found = [read_item(source) for source in items]
    if getattr(args, "stac", None):
        bbox = parse_bbox(args.bbox) if args.bbox else None
        found += list(search_items(args.stac, args.collection, bbox, args.datetime, args.max_items))
    seen: set[str] = set()
    results = []
    for item in found:
        if item.id in seen:  # two items of one id would write the same OUT/<id>_class.tif
            raise SystemExit(
                f"STAC item id {item.id!r} appears twice; predict them with different --out folders"
            )
        seen.add(item.id)
        results.append(
            predict_item(model, meta, item, out, resolution=args.resolution, **_scene_options(args))
        )
    return results


def _predict_dicomweb(args: argparse.Namespace, model: Any, meta: CheckpointMeta) -> int:
    """One DICOMweb INPUT, alone: query, retrieve, predict, optionally store back."""
    from resnet_apps import __version__
    from resnet_apps.checksum import sha256_file
    from resnet_apps.models.checkpoint import find_checkpoint
    from resnet_apps.predict.dicom_results import ModelInfo
    from resnet_apps.predict.dicomweb import predict_dicomweb
    from resnet_apps.predict.pacs import connect

    weights = find_checkpoint(args.run_dir, args.which).with_suffix(".safetensors")
    info = ModelInfo(
        name=f"resnet_apps {meta.task} {meta.model.backbone or 'resnet'}",
        version=f"resnet_apps {__version__}, checkpoint {args.which}",
        weights_sha256=sha256_file(weights),
    )
    result = predict_dicomweb(
        model,
        meta,
        connect(args.inputs[0]),
        args.out,
        model_info=info,
        studies=args.study,
        query=args.query,
        store_results=args.store,
        gradcam=args.gradcam,
        batch_size=args.batch_size,
        device=args.device,
        progress=not args.no_progress,
    )
    print(json.dumps(result, default=str))
    return 0


def _export(args: argparse.Namespace) -> int:
    from resnet_apps.models.export import export_run

    info = export_run(args.run_dir, args.fmt, out=args.out, which=args.which, size=args.size)
    parity = info["parity"]
    print(
        f"wrote {info['path']} (+ {Path(info['path']).name}.json): {args.fmt} vs PyTorch max |diff| "
        f"{parity['max_abs_diff']:.2e} on batches {parity['batches']} (atol {parity['atol']}): ok"
    )
    return 0
