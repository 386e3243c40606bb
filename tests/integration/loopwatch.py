"""A watch on berthd's event loop: ``/_ping`` asked over and over from a thread while a slow
operation runs, so a test can say the loop kept answering (the longest wait, in seconds).

    with PingWatch(daemon) as w:
        slow_operation()
    assert w.worst < 0.5
"""

from __future__ import annotations

import threading
import time
from types import TracebackType

from tests.integration.daemon import Daemon


class PingWatch:
    def __init__(self, d: Daemon, every: float = 0.02) -> None:
        self.d = d
        self.every = every
        self.worst = 0.0
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            status, _ = self.d.request("GET", "/_ping", timeout=60)
            assert status == 200
            self.worst = max(self.worst, time.monotonic() - t0)
            self.count += 1
            self._stop.wait(self.every)

    def __enter__(self) -> PingWatch:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(60)
