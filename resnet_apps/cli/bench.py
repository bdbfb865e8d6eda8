"""``resnet-apps bench io|train|predict|data|decode``: speed and memory figures, never part of the test suite."""

from __future__ import annotations

import argparse
import importlib


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench", help="measure throughput and memory (io, train, predict, data, decode)"
    )
    benches = parser.add_subparsers(dest="bench", metavar="BENCH", required=True)
    for name in ("io", "train", "predict", "data", "decode"):
        # each benchmark module defines add_arguments(parser) and run(args) -> int
        module = importlib.import_module(f"resnet_apps.bench.{name}")
        sub = benches.add_parser(
            name, help=module.__doc__.strip().splitlines()[0] if module.__doc__ else name
        )
        module.add_arguments(sub)
        sub.set_defaults(handler=module.run)
