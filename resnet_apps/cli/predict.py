"""``resnet-apps predict RUN_DIR INPUT... --out OUT`` and ``resnet-apps export RUN_DIR --format onnx|torchscript``.

What each INPUT becomes:
- a folder: every DICOM / PNG / JPEG / TIFF under it (recursively) is one CSV row in ``OUT/predictions.csv``
  (bad files in ``OUT/errors.csv``; rerunning with the same OUT resumes);
- a GeoTIFF file: a scene, streamed block by block to ``OUT/<stem>_class.tif`` (+ ``_prob.tif``; the stem is
  the whole name less ``.tif``; the class map carries a colour table and class names for QGIS) for
  segmentation models, and for classification models when it holds more than 2 x 2 chips (a class map at
  the chip stride); a chip-sized GeoTIFF is one CSV row;
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
        help="GeoTIFF scenes, image files or folders, or one dicomweb+http(s)://HOST/ROOT service "
        "(none with --manifest)",
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


def _is_scene(path: Path, task: str, image_size: int | None) -> bool:
    """A TIFF is a scene for segmentation, or for classification when it holds more than 2 x 2 chips."""
    from resnet_apps.io import read_geotiff, sniff_format

    if not path.is_file() or sniff_format(path) != "tiff":
        return False
    if task == "segmentation":
        return True
    _, meta = read_geotiff(path, window=(0, 0, 1, 1))
    chip = image_size or 64
    return meta.height > 2 * chip or meta.width > 2 * chip


def _refuse_clashing_outputs(scenes: list[Path], out: Path) -> None:
    """Two scenes of one call must not write the same ``OUT/<stem>_class.tif`` (the second would replace it)."""
    from resnet_apps.predict.scene import scene_stem

    first: dict[str, Path] = {}
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

    from resnet_apps.io.writable import check_writable, writing
    from resnet_apps.models.checkpoint import load_run

    if bool(args.inputs) == bool(args.manifest):
        raise SystemExit("predict: give INPUTs or --manifest FILE (one of the two)")
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
    scenes = [Path(p) for p in args.inputs if _is_scene(Path(p), task, image_size)]
    images = [p for p in args.inputs if Path(p) not in scenes]
    if images and task != "classification":
        raise SystemExit(f"{images[0]}: a {task} model predicts GeoTIFF scenes only; pass .tif scenes")
    _refuse_clashing_outputs(scenes, out)
    with writing(out, "predict --out", space_only=True):
        results = _run_inputs(args, model, meta, scenes, images, out)
    for result in results:
        print(json.dumps(result, default=str))
    return 0


def _run_inputs(
    args: argparse.Namespace,
    model: Any,
    meta: CheckpointMeta,
    scenes: list[Path],
    images: list[str],
    out: Path,
) -> list[dict[str, Any]]:
    """Predict every scene, then the images (one CSV); returns one summary dict per call."""
    from resnet_apps.predict.folder import predict_folder
    from resnet_apps.predict.scene import predict_scene

    results: list[dict[str, Any]] = []
    for scene in scenes:
        results.append(
            predict_scene(
                model,
                meta,
                scene,
                out,
                tile=args.tile,
                overlap=args.overlap,
                block=args.block,
                batch_size=args.batch_size,
                blend=args.blend,
                probabilities=args.probabilities,
                device=args.device,
                progress=not args.no_progress,
                pipeline=not getattr(args, "no_pipeline", False),
            )
        )
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
