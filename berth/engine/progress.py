"""The progress of a pull or push as Docker streams it (reference/wire/13-pull.md,
17-pull-layers.md, 11-push.md), so the docker CLI draws its bars: ``Progress`` collects the
messages from any thread for one streaming response."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Callable


def _human(n: float) -> str:
    units = ("B", "kB", "MB", "GB", "TB", "PB")
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n /= 1000
        i += 1
    return "%.4g%s" % (n, units[i])


def progress_bar(current: int, total: int) -> str:
    """Docker's JSONProgress.String() at the daemon's width (200 columns, no time left)."""
    if current <= 0 and total <= 0:
        return ""
    if total <= 0:
        return "%8s" % _human(current)
    pct = min(int(current / total * 100) // 2, 50)
    bar = "[" + "=" * pct + ">" + " " * max(50 - pct, 0) + "] "
    nums = "%8s/%s" % (_human(current), _human(total)) if current <= total else "%8s" % _human(current)
    return bar + nums


class Progress:
    """Collects JSON messages from any thread for one streaming response."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sink: Callable[[dict[str, Any]], None]):
        self.loop = loop
        self.sink = sink
        self._last: dict[str, float] = {}

    def emit(self, msg: dict[str, Any]) -> None:
        if threading.current_thread() is threading.main_thread():
            self.sink(msg)
        else:
            self.loop.call_soon_threadsafe(self.sink, msg)

    def status(self, status: str, ident: str | None = None, detail: bool = False) -> None:
        m: dict[str, Any] = {"status": status}
        if detail:
            m["progressDetail"] = {}
        if ident:
            m["id"] = ident
        self.emit(m)

    def bar(self, status: str, ident: str, current: int, total: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last.get(ident, 0) < 0.1:
            return
        self._last[ident] = now
        self.emit({"status": status, "progressDetail": {"current": current, "total": total},
                   "progress": progress_bar(current, total), "id": ident})
