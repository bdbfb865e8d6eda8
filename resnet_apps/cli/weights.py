"""``resnet-apps weights list | fetch NAME | verify``: the local store of ImageNet weights.

On a connected machine ``fetch`` writes ``<tag>.safetensors`` and records its sha256 in ``weights.json``;
copy that folder to an offline machine and set ``RESNET_APPS_WEIGHTS_DIR`` to it.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this group's sub-commands to the top-level parser."""
    parser = subparsers.add_parser("weights", help="list, fetch and verify ImageNet weights for offline use")
    sub = parser.add_subparsers(dest="weights_command", metavar="ACTION", required=True)

    listing = sub.add_parser("list", help="ResNet weight tags and where a local copy is")
    listing.add_argument("pattern", nargs="?", default="*", help="glob on timm tags, e.g. 'resnet50*'")
    listing.add_argument("--local", action="store_true", help="only tags with a local copy")
    listing.set_defaults(handler=_list)

    fetch = sub.add_parser("fetch", help="download NAME (e.g. resnet18.a1_in1k) as NAME.safetensors")
    fetch.add_argument("name", help="timm name or tag: resnet50 (default tag) or resnet50.tv_in1k")
    fetch.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="target folder (default: $RESNET_APPS_WEIGHTS_DIR, else ~/.cache/resnet_apps/weights)",
    )
    fetch.set_defaults(handler=_fetch)

    verify = sub.add_parser("verify", help="recompute the sha256 of every fetched file")
    verify.add_argument("--dir", type=Path, default=None, help="store folder (default as for fetch)")
    verify.set_defaults(handler=_verify)


def _list(args: argparse.Namespace) -> int:
    from resnet_apps.weights.store import list_weights

    rows = list_weights(args.pattern)
    if args.local:
        rows = [r for r in rows if r["local"]]
    width = max((len(r["name"]) for r in rows), default=10)
    for row in rows:
        mark = "*" if row["default"] else " "
        where = f"{row['where']}: {row['local']}" if row["local"] else "-"
        print(f"{mark} {row['name']:<{width}}  {where}")
    print(f"{len(rows)} tags ({sum(1 for r in rows if r['local'])} local); * = default for 'imagenet'")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from resnet_apps.weights.store import fetch_weights

    path = fetch_weights(args.name, args.dir)
    print(f"wrote {path}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from resnet_apps.weights.locations import fetch_dir
    from resnet_apps.weights.store import verify_weights

    folder = args.dir or fetch_dir()
    rows = verify_weights(folder)
    for row in rows:
        print(f"ok  {row['name']}  {row['sha256'][:16]}  {row['file']}")
    print(f"{len(rows)} file(s) verified in {folder}")
    return 0
