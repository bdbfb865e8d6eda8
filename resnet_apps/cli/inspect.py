"""``resnet-apps inspect FILE...``: a one-screen summary per image file (never patient identifiers)."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``inspect`` to the top-level parser."""
    parser = subparsers.add_parser(
        "inspect",
        help="summarise DICOM / GeoTIFF / PNG / JPEG files (dtype, bands, window, CRS, nodata, percentiles)",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="image files (format detected from content)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per file instead of text")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from resnet_apps.io.inspect import format_summary, inspect_file  # torch-free, but keep --help fast

    failures = 0
    for i, name in enumerate(args.files):
        info = inspect_file(name)
        failures += "error" in info
        if args.json:
            print(json.dumps(info, default=str))
        else:
            print(("\n" if i else "") + format_summary(info))
    # a file that cannot be read is reported in its block; the exit status says "some failed"
    return 1 if failures else 0
