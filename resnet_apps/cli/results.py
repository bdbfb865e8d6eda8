"""`resnet-apps results [--dir docs/results] [--readme README.md]`: the results table from metrics.json."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``results`` command to the top-level parser."""
    parser = subparsers.add_parser(
        "results",
        help="print the Markdown results table built from docs/results/*/metrics.json",
        description="Build the results table (metric with 95 % CI, seed spread over runs that differ only in "
        "train.seed, the trivial baseline floor and model minus floor, published anchor, split sizes, training "
        "time and convergence, hardware, weights) from every DIR/<run>/metrics.json (one level: runs moved "
        "into a sub-folder such as DIR/archive/ stay out), plus any DIR/<name>/comparison.json "
        "written by `resnet-apps report RUN_A RUN_B`. With --readme, also replace the text between "
        "'<!-- results:start -->' and '<!-- results:end -->' in that file.",
    )
    parser.add_argument(
        "--dir", default="docs/results", help="folder of <run>/metrics.json (default docs/results)"
    )
    parser.add_argument(
        "--readme", default=None, help="Markdown file whose marked block is replaced by the table"
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from resnet_apps.report.document import write_text_atomic
    from resnet_apps.report.results_table import replace_between_markers, results_markdown

    block = results_markdown(args.dir)
    print(block, end="")
    if args.readme is not None:
        readme = Path(args.readme)
        text = readme.read_text(encoding="utf-8")
        write_text_atomic(readme, replace_between_markers(text, block, str(readme)))
        print(f"updated: {readme}")
    return 0
