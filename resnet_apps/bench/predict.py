"""Benchmark placeholder for predict (the owner replaces this file)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this benchmark's options."""


def run(args: argparse.Namespace) -> int:
    raise SystemExit("bench predict is not built yet")
