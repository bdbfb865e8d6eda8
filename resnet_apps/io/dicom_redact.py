"""Keep DICOM header values out of logs: pydicom's warnings and log records with quoted values redacted."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def _redact(text: str) -> str:
    return _QUOTED.sub("'<value withheld>'", text)


class _RedactFilter(logging.Filter):
    """Rewrites pydicom log records so that no quoted header value reaches a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _redact(record.getMessage())
        record.args = None
        return True


_PYDICOM_LOG = logging.getLogger("pydicom")
if not any(isinstance(f, _RedactFilter) for f in _PYDICOM_LOG.filters):
    _PYDICOM_LOG.addFilter(_RedactFilter())


@contextlib.contextmanager
def redacted_warnings(path: Path) -> Iterator[None]:
    """Re-issue the warnings raised inside (pydicom's) with quoted values withheld and the file named."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for item in caught:
        text = str(item.message)
        if item.filename and "pydicom" in item.filename.replace(os.sep, "/"):
            text = f"{path}: pydicom: {_redact(text)}"
        warnings.warn(
            text, item.category if issubclass(item.category, Warning) else UserWarning, stacklevel=3
        )
