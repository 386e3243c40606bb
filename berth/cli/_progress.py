"""Rendering of the JSON message streams of pull, import and build (docker's jsonmessage).

Not on a terminal, docker prints one line per status and skips progress-bar updates; that is
the behaviour here. An ``error`` message ends the stream with ``StreamFailed``.
"""

from __future__ import annotations

import json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable


class StreamFailed(Exception):
    """The daemon reported an error inside the stream."""


def display(lines: Iterable[bytes], write: Callable[[str], object]) -> list[dict[str, object]]:
    """Print each message; return the ``aux`` payloads seen."""
    aux: list[dict[str, object]] = []
    for raw in lines:
        try:
            msg = json.loads(raw)
        except ValueError:
            write(raw.decode("utf-8", "replace") + "\n")
            continue
        if not isinstance(msg, dict):
            continue
        if msg.get("error") or msg.get("errorDetail"):
            detail = msg.get("errorDetail") or {}
            raise StreamFailed(msg.get("error") or detail.get("message") or "unknown error")
        if msg.get("aux") is not None:
            aux.append(msg["aux"])  # type: ignore[arg-type]
            continue
        if msg.get("stream") is not None:
            write(str(msg["stream"]))
            continue
        if msg.get("progress") or msg.get("progressDetail", {}).get("total"):  # type: ignore
            continue
        status = msg.get("status")
        if status is None:
            continue
        ident = msg.get("id")
        write(f"{ident}: {status}\n" if ident else f"{status}\n")
    return aux
