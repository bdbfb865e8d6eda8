"""``predict RUN_DIR --manifest scenes.txt --out OUT [--shard i/N]`` and ``predict summarize OUT``.

Many scenes on many machines: every worker runs the same command and takes its share of the sorted
manifest (``predict.manifest``): one process per ``--shard i/N`` (0-based; a Slurm array task, a Kubernetes
indexed job) or per torchrun rank (``torchrun --nproc_per_node=G -m resnet_apps predict ...``), or both.
Each scene goes to ``OUT/<key>/`` (map(s), then done.json; failed.json on an error); rerunning the same
command skips done scenes and redoes broken ones. A worker exits 0 once its share is processed, also when
some scenes failed (a non-zero exit under torchrun would stop the other ranks mid-scene): gate the pipeline
on ``predict summarize OUT``, which exits 1 while any scene is failed or missing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from resnet_apps.predict.manifest import ManifestEntry, Shard

SUMMARIZE_COMMAND = "predict-summarize"  # `resnet-apps predict summarize ...` is routed here by cli.main


def add_manifest_options(parser: argparse.ArgumentParser) -> None:
    """``--manifest``, ``--shard`` and ``--no-verify`` on the ``predict`` parser."""
    group = parser.add_argument_group("many scenes (a manifest, split between workers)")
    group.add_argument(
        "--manifest",
        default=None,
        metavar="FILE",
        help="text file of scenes, one a line (paths, GeoTIFF URLs, STAC item URLs; # comments); "
        "each scene goes to OUT/<name>/ with a done.json, and a rerun skips done scenes",
    )
    group.add_argument(
        "--shard",
        default=None,
        metavar="i/N",
        help="take share i of N (0-based) of the sorted manifest: --shard $SLURM_ARRAY_TASK_ID/"
        "$SLURM_ARRAY_TASK_COUNT, or $JOB_COMPLETION_INDEX/N; under torchrun each rank splits it further",
    )
    group.add_argument(
        "--no-verify",
        action="store_true",
        help="skip done scenes by their recorded sizes, without hashing their maps again",
    )


def register_summarize(subparsers: argparse._SubParsersAction) -> None:
    """``predict summarize OUT_DIR`` (registered as ``predict-summarize``; both spellings work)."""
    parser = subparsers.add_parser(
        SUMMARIZE_COMMAND,
        help="list done, failed and missing scenes of a manifest run (also: `predict summarize`); exit 1 "
        "unless all are done",
        description="Done, failed and missing scenes of `predict --manifest` runs into OUT_DIR. Exits 0 when "
        "every scene is done (its maps present, hashes as recorded), 1 otherwise: gate a cluster pipeline on "
        "it. Also spelled `resnet-apps predict summarize OUT_DIR`.",
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", help="the --out folder of the manifest run")
    parser.add_argument(
        "--manifest", default=None, metavar="FILE", help="the manifest (default: OUT_DIR/manifest.json)"
    )
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the summary as JSON")
    parser.add_argument(
        "--no-verify", action="store_true", help="check the maps' sizes only, not their sha256"
    )
    parser.set_defaults(handler=summarize_command)


def route_summarize(argv: list[str]) -> list[str]:
    """``predict summarize ...`` -> ``predict-summarize ...`` (``predict`` itself takes RUN_DIR first)."""
    if argv[:2] == ["predict", "summarize"]:
        return [SUMMARIZE_COMMAND, *argv[2:]]
    return argv


def manifest_plan(args: argparse.Namespace) -> tuple[Shard, list[ManifestEntry]]:
    """This worker and the manifest's entries, checked before the model is loaded (bad input fails fast)."""
    from resnet_apps.predict.manifest import parse_shard, read_manifest, worker_shard

    return worker_shard(parse_shard(args.shard) if args.shard else None), read_manifest(args.manifest)


def predict_manifest(
    args: argparse.Namespace, model: Any, meta: Any, plan: tuple[Shard, list[ManifestEntry]]
) -> int:
    """This worker's share of ``args.manifest``; one JSON line per scene, then one for the worker."""
    from resnet_apps.predict.manifest_run import checkpoint_info, run_manifest, scene_predictor

    shard, entries = plan
    predictor = scene_predictor(
        model,
        meta,
        tile=args.tile,
        overlap=args.overlap,
        block=args.block,
        batch_size=args.batch_size,
        blend=args.blend,
        probabilities=args.probabilities,
        device=args.device,
        progress=not args.no_progress,
        pipeline=not args.no_pipeline,
        readers=args.readers,
    )
    report = run_manifest(
        entries,
        Path(args.out),
        predictor,
        checkpoint=checkpoint_info(args.run_dir, args.which),
        shard=shard,
        verify=not args.no_verify,
        on_scene=lambda outcome: print(json.dumps({"shard": str(shard), **outcome.to_dict()}), flush=True),
    )
    print(json.dumps({"worker": report.to_dict()}), flush=True)
    if report.count("failed"):
        print(
            f"shard {shard}: {report.count('failed')} scene(s) failed (OUT/<name>/failed.json); "
            f"`resnet-apps predict summarize {args.out}` lists them",
            file=sys.stderr,
        )
    return 0


def torchrun_device(device: str) -> str:
    """``cuda`` under torchrun -> ``cuda:LOCAL_RANK``: one GPU per rank (an explicit ``cuda:k`` is kept)."""
    local = os.environ.get("LOCAL_RANK")
    return f"cuda:{int(local)}" if device == "cuda" and local is not None else device


def summarize_command(args: argparse.Namespace) -> int:
    from resnet_apps.io.atomic import atomic_write_json
    from resnet_apps.predict.manifest import read_manifest
    from resnet_apps.predict.scene_records import summarize

    entries = read_manifest(args.manifest) if args.manifest else None
    summary = summarize(Path(args.out_dir), entries, verify=not args.no_verify)
    counts = summary.to_dict()["counts"]
    print(f"{args.out_dir}: {counts['done']} done, {counts['failed']} failed, {counts['missing']} missing")
    for status in summary.failed:
        print(f"failed   {status.key}  {status.source}\n         {status.reason}")
    for status in summary.missing:
        print(
            f"missing  {status.key}  {status.source}"
            + (f"\n         {status.reason}" if status.reason else "")
        )
    if args.json:
        atomic_write_json(args.json, summary.to_dict(), indent=2)
    return 0 if summary.complete else 1
