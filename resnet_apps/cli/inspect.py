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
    add_budget_options(parser)
    parser.set_defaults(handler=_run)


def frame_arg(text: str) -> int | str:
    """``--frame``: a 0-based index or a policy (first, middle, last)."""
    if text.lstrip("-").isdigit():
        return int(text)
    if text not in ("first", "middle", "last"):
        raise argparse.ArgumentTypeError(f"{text!r}: give a 0-based index or first / middle / last")
    return text


def add_budget_options(parser: argparse.ArgumentParser) -> None:
    """``--frame`` and ``--max-pixels``, shared by ``inspect`` and ``predict``."""
    parser.add_argument(
        "--frame",
        type=frame_arg,
        default=None,
        help="multi-frame DICOM: the frame to read, a 0-based index or first / middle / last",
    )
    parser.add_argument(
        "--max-pixels",
        type=lambda text: int(float(text)),
        default=None,
        metavar="N",
        help="refuse files whose header claims more than N values (H x W x bands; default 4.5e8 = "
        "1.5e8 px x 3 bands, about 1.8 GB as float32)",
    )


def _run(args: argparse.Namespace) -> int:
    from resnet_apps.io.inspect import format_summary, inspect_file  # torch-free, but keep --help fast

    failures = 0
    for i, name in enumerate(args.files):
        info = inspect_file(name, frame=args.frame, max_pixels=args.max_pixels)
        failures += "error" in info
        if args.json:
            print(json.dumps(info, default=str))
        else:
            print(("\n" if i else "") + format_summary(info))
    # a file that cannot be read is reported in its block; the exit status says "some failed"
    return 1 if failures else 0
