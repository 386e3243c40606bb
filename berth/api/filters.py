"""Docker's ``filters`` query parameter and the label rule every list endpoint shares."""

from __future__ import annotations

import json

from berth.api.http import Request
from berth.errors import InvalidArgument


def parse_filters(req: Request) -> dict[str, list[str]]:
    raw = req.query.get("filters")
    if not raw:
        return {}
    try:
        f = json.loads(raw)
    except ValueError:
        raise InvalidArgument("invalid filter") from None
    if not isinstance(f, dict):
        raise InvalidArgument("invalid filter")
    out: dict[str, list[str]] = {}
    for k, v in f.items():
        # Two forms: {"k": ["v"]} and the older {"k": {"v": true}}.
        out[k] = list(v.keys()) if isinstance(v, dict) else list(v)
    return out


def labels_match(labels: dict[str, str], wanted: list[str]) -> bool:
    """Every ``key`` or ``key=value`` in wanted holds for labels (Docker's ``label`` filter)."""
    for v in wanted:
        k, eq, val = v.partition("=")
        if k not in labels or (eq and labels[k] != val):
            return False
    return True
