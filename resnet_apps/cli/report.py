"""`resnet-apps report RUN_DIR [RUN_B] [--out DIR]`: re-render a run's report, or compare two runs."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``report`` command to the top-level parser."""
    parser = subparsers.add_parser(
        "report",
        help="write report.html / report.md from a run's metrics.json, or compare two runs",
        description="Re-render RUN_DIR/report.html and report.md from metrics.json alone (no model needed). "
        "With a second run directory, write a side-by-side comparison with paired bootstrap differences "
        "(RUN_B minus RUN_DIR) on their shared test samples.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory holding metrics.json (run A)")
    parser.add_argument(
        "run_b",
        metavar="RUN_B",
        nargs="?",
        default=None,
        help="second run directory to compare against RUN_DIR (optional)",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="output folder (default: RUN_DIR; comparison: RUN_B/compare_<RUN_DIR name>)",
    )
    parser.add_argument(
        "--n-boot",
        type=int,
        default=None,
        help="comparison only: paired bootstrap resamples (default: run A's setting)",
    )
    parser.add_argument("--seed", type=int, default=None, help="comparison only: bootstrap seed")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from resnet_apps.io.writable import check_writable, writing
    from resnet_apps.report import compare_runs, render_report

    out = args.out or (args.run_dir if args.run_b is None else args.run_b)
    check_writable(out, "report --out")
    with writing(out, "report --out", space_only=True):
        if args.run_b is None:
            paths = render_report(args.run_dir, args.out)
        else:
            paths = compare_runs(args.run_dir, args.run_b, args.out, n_boot=args.n_boot, seed=args.seed)
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0
