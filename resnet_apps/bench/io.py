"""Images/s for DICOM decode per transfer syntax and for GeoTIFF chips: first read, re-read, cached.

``resnet-apps bench io [--data DIR] [--repeats N] [--chips N] [--json OUT]``

Three figures per row:
- **first**: the first ``read_dicom`` / ``read_geotiff`` of the file in this process (decoder set-up
  included). The OS page cache is not dropped (that needs root and would slow every other user of the
  machine), so "first" means first in-process decode, not a cold disk.
- **re-read**: the same call again (``--repeats`` times): the per-epoch cost without a cache.
- **cached**: loading the decoded array from ``resnet_apps.data.cache.ArrayCache`` (memory-mapped
  ``.npy``, forced into memory with a sum), i.e. what the second epoch of a cached dataset pays.
  If that module is absent the column says so.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``bench io``."""
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="shared data root (default $RESNET_APPS_SHARED_DATA or ../shared/data)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="re-reads per file (default 3)")
    parser.add_argument("--chips", type=int, default=200, help="EuroSAT-MS chips to read (default 200)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")


def shared_data_root(arg: Path | None) -> Path:
    if arg is not None:
        return arg
    env = os.environ.get("RESNET_APPS_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _time(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _cache(directory: Path) -> Any:
    try:
        from resnet_apps.data.cache import ArrayCache
    except ImportError:
        return None
    return ArrayCache(directory)


def _cached_rate(cache: Any, files: list[Path], arrays: list[np.ndarray], repeats: int) -> float | None:
    """Images/s of cache hits (keys computed once, as a dataset does after its first epoch)."""
    if cache is None:
        return None
    keys = [cache.key([f], {"bench": "io"}) for f in files]
    for key, array in zip(keys, arrays, strict=False):
        cache.store(key, {"image": array})
    start = time.perf_counter()
    for _ in range(repeats):
        for key in keys:
            entry = cache.load(key)
            assert entry is not None, "bench cache entry vanished"
            float(np.asarray(entry["image"]).sum())  # touch every byte of the memory map
    return len(keys) * repeats / (time.perf_counter() - start)


def bench_dicom(root: Path, repeats: int, cache: Any) -> list[dict[str, Any]]:
    """One row per DICOM file: syntax, size and images/s first / re-read / cached."""
    from resnet_apps.errors import ResnetAppsError
    from resnet_apps.io import read_dicom

    rows: list[dict[str, Any]] = []
    for path in sorted((root / "dicom_radiographs").rglob("*.dcm")):
        try:
            first, (image, meta) = _time(partial(read_dicom, path))
        except ResnetAppsError as error:
            rows.append({"file": path.name, "syntax": "?", "error": str(error)[:80]})
            continue
        again = [_time(partial(read_dicom, path))[0] for _ in range(repeats)]
        rows.append(
            {
                "file": path.name,
                "syntax": meta.transfer_syntax,
                "size": f"{meta.rows}x{meta.cols}",
                "first": 1.0 / first,
                "reread": 1.0 / float(np.mean(again)),
                "cached": _cached_rate(cache, [path], [image], repeats),
                "mpix_s": meta.rows * meta.cols / float(np.mean(again)) / 1e6,
            }
        )
    return rows


def bench_geotiff(root: Path, chips: int, repeats: int, cache: Any) -> dict[str, Any]:
    """EuroSAT-MS chips (13 x 64 x 64 uint16): images/s first pass, re-read pass, cached pass."""
    from resnet_apps.io import read_geotiff

    files = sorted((root / "eurosat_ms").rglob("*.tif"))[:chips]
    if not files:
        return {"error": f"no chips under {root / 'eurosat_ms'}"}
    first, arrays = _time(lambda: [read_geotiff(f)[0] for f in files])
    again = [_time(lambda: [read_geotiff(f) for f in files])[0] for _ in range(repeats)]
    return {
        "files": len(files),
        "first": len(files) / first,
        "reread": len(files) / float(np.mean(again)),
        "cached": _cached_rate(cache, files, arrays, repeats),
    }


def _fmt(rate: float | None) -> str:
    return f"{rate:9.1f}" if rate is not None else "      n/a"


def run(args: argparse.Namespace) -> int:
    """Measure and print the table; returns 0 (2 when the data folder is missing)."""
    root = shared_data_root(args.data)
    if not (root / "dicom_radiographs").is_dir():
        print(f"error: no dicom_radiographs under {root}; fix: pass --data or set RESNET_APPS_SHARED_DATA")
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-io-cache-") as scratch:  # ~135 MB, removed after
        return _measure(args, root, _cache(Path(scratch)))


def _measure(args: argparse.Namespace, root: Path, cache: Any) -> int:
    note = "" if cache is not None else "  (resnet_apps.data.cache not available: cached column not measured)"
    dicom = bench_dicom(root, args.repeats, cache)
    geo = bench_geotiff(root, args.chips, args.repeats, cache)

    print(f"bench io: images/s (first read in process | re-read, mean of {args.repeats} | cached load){note}")
    columns = ("first", "re-read", "cached")
    print(
        f"{'DICOM file':<22} {'transfer syntax':<50} {'size':>10} "
        + " ".join(f"{c:>9}" for c in columns)
        + "  Mpx/s"
    )
    for row in dicom:
        if "error" in row:
            print(f"{row['file'][:22]:<22} error: {row['error']}")
            continue
        print(
            f"{row['file'][:22]:<22} {row['syntax'][:50]:<50} {row['size']:>10} {_fmt(row['first'])} "
            f"{_fmt(row['reread'])} {_fmt(row['cached'])} {row['mpix_s']:6.1f}"
        )
    if "error" in geo:
        print(f"GeoTIFF chips: {geo['error']}")
    else:
        label = f"{geo['files']} GeoTIFF chips, 13 bands uint16"
        print(
            f"{'EuroSAT-MS chips':<22} {label:<50} {'64x64':>10} {_fmt(geo['first'])} "
            f"{_fmt(geo['reread'])} {_fmt(geo['cached'])}"
        )
    if args.json is not None:
        args.json.write_text(json.dumps({"dicom": dicom, "geotiff": geo}, indent=2, default=str))
    return 0
