"""``resnet-apps data stats DIR`` (band statistics for a data card), ``data fetch NAME``, ``data cache RECIPE``."""

from __future__ import annotations

import argparse
import sys


def _band(text: str) -> str | int:
    # "3" means band number 3 (1-based, as GDAL and inspect count); anything else is a band name
    return int(text) if text.isdigit() else text


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``data`` group (``stats``, ``fetch``, ``cache``) to the top-level parser."""
    parser = subparsers.add_parser("data", help="dataset utilities: band statistics, downloads, array cache")
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    stats = sub.add_parser(
        "stats",
        help="per-band mean/std/percentiles of scaled values, printed as a data card `statistics:` block",
        description="Streams every image under DIR (or those matching --pattern) and prints YAML to paste "
        "into a data card. Percentiles are exact for integer images, reservoir-sampled for float images.",
    )
    stats.add_argument("dir", metavar="DIR", help="dataset folder")
    stats.add_argument(
        "--bands",
        nargs="+",
        type=_band,
        default=None,
        help="band names (B01 B02 ...) or 1-based band numbers (as inspect shows: band1 is 1); default: all bands",
    )
    stats.add_argument(
        "--scale", type=float, default=1.0, help="raw -> physical factor, e.g. 0.0001 for EuroSAT"
    )
    stats.add_argument(
        "--pattern", default=None, help="glob relative to DIR, e.g. '*/*.tif' (default: all images)"
    )
    stats.add_argument("--limit", type=int, default=None, help="use only the first N files (sorted)")
    stats.set_defaults(handler=_stats)

    fetch = sub.add_parser("fetch", help="download a public dataset with resume and checksums")
    fetch.add_argument("name", nargs="?", metavar="NAME", help="dataset name (see --list)")
    fetch.add_argument("--root", default=".", help="folder to download into (default: current folder)")
    fetch.add_argument("--list", action="store_true", help="list the datasets that can be fetched")
    fetch.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="give up after this long in total (every file, every retry); partial files are resumed "
        "by the next fetch (default: no overall limit; each network read still times out after 60 s)",
    )
    fetch.add_argument(
        "--base-url",
        default=None,
        metavar="URL",
        help="fetch every file from URL/<filename> instead (a mirror); checksums are verified as usual",
    )
    fetch.add_argument(
        "--allow-insecure",
        action="store_true",
        help="accept plain http:// downloads (refused by default: they can be altered in transit)",
    )
    fetch.set_defaults(handler=_fetch)

    cache = sub.add_parser(
        "cache",
        help="decode a recipe's training images into the array cache, in parallel, before training",
        description="Writes the one memory-mapped array the training loop gathers its batches from "
        "(data.array_cache), decoding across processes with a progress bar. A later train finds it.",
    )
    cache.add_argument("recipe", help="recipe YAML")
    cache.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    cache.add_argument("--workers", type=int, default=None, help="decode processes (default: min(4, cpus))")
    cache.set_defaults(handler=_cache)


def _stats(args: argparse.Namespace) -> int:
    from resnet_apps.data.stats import compute_band_stats, find_images, stats_yaml

    files = find_images(args.dir, args.pattern)
    if args.limit is not None:
        files = files[: args.limit]
    stats = compute_band_stats(files, bands=args.bands, scale=args.scale)
    print(f"# resnet-apps data stats {args.dir}: {len(files)} files, scale {args.scale}, valid pixels only")
    print(stats_yaml(stats), end="")
    return 0


def _cache(args: argparse.Namespace) -> int:
    import time

    from resnet_apps.data.array_cache import shard_for
    from resnet_apps.recipe import load_recipe
    from resnet_apps.train.batches import cache_workers
    from resnet_apps.train.datasets import normalisation, recipe_dataset, split_records

    recipe = load_recipe(args.recipe, [*args.overrides, "data.cache=true"])
    split = split_records(recipe)
    _, mean, std, _ = normalisation(recipe, split.train, split.classes)
    dataset = recipe_dataset(split.train, recipe, (mean, std), split.classes, train=True)
    workers = cache_workers() if args.workers is None else args.workers
    started = time.perf_counter()
    shard = shard_for(dataset, workers, progress=sys.stderr.isatty())
    if shard is None:
        print(
            f"error: {recipe.name}: the training images do not form one array (sizes differ, or the cache "
            "folder cannot be written); training reads them one by one",
            file=sys.stderr,
        )
        return 1
    print(
        f"{recipe.name}: {len(shard)} training images {list(shard.image.shape[1:])} as {shard.image.dtype} "
        f"in the array cache ({shard.key[:12]}, {time.perf_counter() - started:.1f} s, {workers} process(es))"
    )
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from resnet_apps import fetch  # imported here: it may pull in network clients

    names = sorted(fetch.DATASETS)
    if args.list or args.name is None:
        print("datasets: " + ", ".join(names))
        return 0 if args.list else 2
    if args.name not in fetch.DATASETS:
        print(f"error: unknown dataset {args.name!r}; choose one of: {', '.join(names)}", file=sys.stderr)
        return 2
    if args.timeout is not None and args.timeout <= 0:
        print(f"error: --timeout {args.timeout:g}: give a positive number of seconds", file=sys.stderr)
        return 2
    result = fetch.fetch_dataset(
        args.name,
        args.root,
        base_url=args.base_url,
        deadline=args.timeout,
        allow_insecure=args.allow_insecure,
        log=lambda line: print(line, file=sys.stderr),
    )
    if result is not None:
        print(result)
    return 0
