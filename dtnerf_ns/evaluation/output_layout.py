"""What ``dtnerf-eval`` writes into its output folder (one place, used by the writer and the CLI; imports nothing
heavy so that ``dtnerf-eval --help`` stays fast)."""

from __future__ import annotations

import json
from pathlib import Path

FORMAT = "dtnerf-eval"
"""``format`` of metrics.json (also how an earlier evaluation's folder is recognised)."""
METRICS_JSON = "metrics.json"
"""Every metric, its definition, per-frame values and the run evaluated."""
METRICS_MD = "metrics.md"
"""The table shaped like the DT-NeRF paper's, with footnotes and definitions."""
STRIP_PNG = "strip.png"
"""Ground truth | render | error for a few test frames."""


def is_eval_output(folder: Path) -> bool:
    """Whether ``folder`` holds an earlier dtnerf-eval output (which a new evaluation may replace)."""
    try:
        return json.loads((Path(folder) / METRICS_JSON).read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False
