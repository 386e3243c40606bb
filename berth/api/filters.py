"""Docker's ``filters`` query parameter and the label rule every list endpoint shares."""

from __future__ import annotations

import json

from collections.abc import Collection

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


def check_filters(filters: dict[str, list[str]], accepted: Collection[str]) -> None:
    """dockerd's Args.Validate: a key the endpoint does not know is a 400 (a prune must not
    take a mistyped filter for no filter)."""
    for key in filters:
        if key not in accepted:
            raise InvalidArgument(f"invalid filter '{key}'")


def bool_filter(filters: dict[str, list[str]], key: str, default: bool) -> bool:
    """dockerd's Args.GetBoolOrDefault: true/1 or false/0 (any case), else a 400."""
    vals = filters.get(key)
    if not vals:
        return default
    for v in vals:
        if v.lower() == "true" or v == "1":
            return True
        if v.lower() == "false" or v == "0":
            return False
    raise InvalidArgument(f"invalid filter '{key}=[{' '.join(vals)}]'")


def prune_labels_match(labels: dict[str, str], filters: dict[str, list[str]]) -> bool:
    """dockerd's prune matchLabels: every ``label`` holds, and not every ``label!`` does."""
    if "label" in filters and not labels_match(labels, filters["label"]):
        return False
    return not ("label!" in filters and labels_match(labels, filters["label!"]))
