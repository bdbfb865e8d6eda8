"""The ``resnet-apps`` command line.

Each file in this package registers one group of sub-commands with ``register(subparsers)`` and
imports the heavy layers (torch, timm) only inside its handlers, so ``resnet-apps --help`` and
``resnet-apps check RECIPE`` stay fast and torch-free. Nothing outside ``cli`` imports ``cli``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from resnet_apps import __version__
from resnet_apps.allocator import keep_freed_memory
from resnet_apps.cli.predict_manifest import route_summarize
from resnet_apps.errors import ResnetAppsError

# sub-command modules, in the order their commands appear in --help
_COMMAND_MODULES = ("train", "weights", "inspect", "data", "report", "results", "predict", "bench", "study")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resnet-apps",
        description="Fine-tune ResNets on DICOM and GeoTIFF data and write evaluation reports.",
    )
    parser.add_argument("--version", action="version", version=f"resnet-apps {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMAND_MODULES:
        importlib.import_module(f"resnet_apps.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; typed errors print their message (file, field, fix) and exit with 2."""
    argv = route_summarize(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(argv)
    keep_freed_memory()  # batch-sized arrays reused instead of faulted in afresh (resnet_apps.allocator)
    try:
        return int(args.handler(args) or 0)
    except ResnetAppsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
