"""Evaluation reports: plain dicts in, self-contained HTML / Markdown / JSON out. Never imports torch.

``render_report(run_dir)`` re-renders a run's report from its metrics.json alone; ``compare_runs`` puts two
runs side by side with paired bootstrap differences; ``write_metrics`` is how the trainer writes
metrics.json (validated, atomic). matplotlib is imported only while a plot is drawn.
"""

from __future__ import annotations

from resnet_apps.report.compare import compare_runs
from resnet_apps.report.document import (
    SCHEMA_VERSION,
    load_metrics,
    to_jsonable,
    validate_metrics,
    write_metrics,
)
from resnet_apps.report.render import render_report

__all__ = [
    "SCHEMA_VERSION",
    "compare_runs",
    "load_metrics",
    "render_report",
    "to_jsonable",
    "validate_metrics",
    "write_metrics",
]
