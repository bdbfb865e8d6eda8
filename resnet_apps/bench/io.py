"""Benchmark placeholder for io (the owner replaces this file)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this benchmark's options."""


def run(args: argparse.Namespace) -> int:
    raise SystemExit("bench io is not built yet")
