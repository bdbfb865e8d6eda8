"""First-epoch decoding across processes: DICOM films/s with 1, 2, ... decode processes.

``resnet-apps bench decode [--data DIR] [--copies N] [--size PX] [--workers 1,2] [--json OUT]``

The first epoch of a cached dataset decodes every film once and writes the array cache
(``data.array_cache.shard_for``, what ``train`` and ``resnet-apps data cache`` run). This times exactly
that over the shared DICOM radiographs (``dicom_radiographs/``: CR films of about 2,000 x 2,000 in
JPEG 2000, JPEG-LS, JPEG lossless and RLE), each repeated ``--copies`` times, resized to ``--size``,
into a fresh cache per worker count. ``1`` decodes in this process; ``N > 1`` in ``N`` worker processes
(the main process collects and writes). A film no installed decoder reads (``RG3_JPLY``, 12-bit JPEG
Extended) is listed and left out. JSON: ``films``, ``rows`` (``workers``, ``seconds``,
``films_per_s``, ``speedup``), ``cpus``, ``load_average``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``bench decode``."""
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="shared data root (default $RESNET_APPS_SHARED_DATA or ../shared/data)",
    )
    parser.add_argument("--copies", type=int, default=4, help="times each film is decoded (default 4)")
    parser.add_argument("--size", type=int, default=224, help="cached image side in px (default 224)")
    parser.add_argument(
        "--workers", default=None, help="comma-separated process counts (default 1 .. cpus, at most 4)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")


def run(args: argparse.Namespace) -> int:
    from resnet_apps.bench.io import shared_data_root
    from resnet_apps.data import ArrayCache, Preprocessing, Record, RecordDataset
    from resnet_apps.data.array_cache import shard_for
    from resnet_apps.io import read_dicom
    from resnet_apps.io.atomic import atomic_write_text

    root = shared_data_root(args.data) / "dicom_radiographs"
    films, skipped = [], []
    for path in sorted(root.rglob("*.dcm")):
        try:
            read_dicom(path)
        except Exception as error:  # a codec no installed plugin has: listed, not timed
            skipped.append(f"{path.relative_to(root)} ({type(error).__name__})")
            continue
        films.append(path.relative_to(root).as_posix())
    if not films:
        print(f"error: no readable DICOM film under {root}; fix: pass --data or set RESNET_APPS_SHARED_DATA")
        return 2
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    counts = [int(n) for n in args.workers.split(",")] if args.workers else list(range(1, min(4, cpus) + 1))
    records = [Record(path=f, label=i % 2) for i in range(args.copies) for f in films]
    prep = Preprocessing(image_size=args.size)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-decode-") as tmp:  # imports and first-use set-up, untimed
        shard_for(RecordDataset(records[:1], root, prep, cache=ArrayCache(tmp)), 0)
    for workers in counts:
        with tempfile.TemporaryDirectory(prefix="bench-decode-") as tmp:
            dataset = RecordDataset(records, root, prep, cache=ArrayCache(tmp))
            started = time.perf_counter()
            shard = shard_for(dataset, workers)
            seconds = time.perf_counter() - started
        if shard is None:
            print("error: the films did not form one array cache")
            return 1
        rows.append({"workers": workers, "seconds": round(seconds, 3), "films_per_s": len(records) / seconds})
    base = rows[0]["films_per_s"]
    load = os.getloadavg()
    print(f"{len(films)} films x {args.copies} copies = {len(records)} decodes, cached at {args.size} px")
    for row in rows:
        row["speedup"] = round(row["films_per_s"] / base, 2)
        row["films_per_s"] = round(row["films_per_s"], 2)
        where = "this process" if row["workers"] <= 1 else f"{row['workers']} processes"
        print(
            f"  {where:>14}: {row['seconds']:7.2f} s  {row['films_per_s']:6.2f} films/s  x{row['speedup']:.2f}"
        )
    for line in skipped:
        print(f"  left out (no decoder): {line}")
    print(f"  load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {cpus} cpus")
    if args.json is not None:
        figures = {
            "films": films,
            "skipped": skipped,
            "copies": args.copies,
            "size": args.size,
            "rows": rows,
            "cpus": cpus,
            "load_average": [round(x, 2) for x in load],
        }
        atomic_write_text(args.json, json.dumps(figures, indent=2) + "\n")
    return 0
