"""`resnet-apps data` commands (placeholder until its issue lands; the owner replaces this file)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this group's sub-commands to the top-level parser."""
