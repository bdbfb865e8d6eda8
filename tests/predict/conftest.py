"""Fixtures of the predict tests: ``orthanc``, a real loopback Orthanc (see tests/orthanc_server.py)."""

from __future__ import annotations

from orthanc_server import orthanc  # noqa: F401  (re-exported: pytest finds fixtures in conftest modules)
