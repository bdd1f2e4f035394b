"""Reading what handlers print: JSON log lines and EMF metric lines."""

from __future__ import annotations

import json
from typing import Any


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of ``text`` that is a JSON object (log lines and EMF metrics alike)."""
    lines = []
    for line in text.splitlines():
        try:
            parsed = json.loads(line)
        except ValueError:
            continue
        if isinstance(parsed, dict):
            lines.append(parsed)
    return lines


def settled_mark(cloud: Any) -> int:
    """Where the cloud's EMF sink stands once nothing from earlier is still running or
    undelivered: the metrics a test causes are the documents after this mark."""
    cloud.wait_lambdas_idle()
    cloud.wait_for_stream_delivery()
    return len(cloud.metrics.documents())
