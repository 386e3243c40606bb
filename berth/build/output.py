"""The build's progress stream, exactly as the classic builder writes it: ``{"stream": ...}``
lines (``Step 2/5 : RUN x``, `` ---> <id>``, the RUN's output), pull progress, ``{"aux":
{"ID": ...}}`` and, at the end, an ``errorDetail``. With ``q=1`` the lines are held back and
only written if the build fails."""

from __future__ import annotations

import codecs
from typing import Any, Callable


class BuildFailed(Exception):
    """A build step failed; ``code`` goes into ``errorDetail`` (a RUN's exit code)."""

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.code = code


class Output:
    def __init__(self, sink: Callable[[dict[str, Any]], None], quiet: bool = False):
        self.sink = sink
        self.quiet = quiet
        self.held: list[dict[str, Any]] = []

    def emit(self, msg: dict[str, Any]) -> None:
        if self.quiet and "aux" not in msg and "error" not in msg:
            self.held.append(msg)
            return
        self.sink(msg)

    def stream(self, text: str) -> None:
        if text:
            self.emit({"stream": text})

    def step(self, n: int, total: int, original: str) -> None:
        self.stream(f"Step {n}/{total} : {original}")
        self.stream("\n")

    def arrow(self, text: str) -> None:
        self.stream(f" ---> {text}\n")

    def flush_held(self) -> None:
        for m in self.held:
            self.sink(m)
        self.held = []

    def decoder(self) -> Callable[[bytes], str]:
        dec = codecs.getincrementaldecoder("utf-8")("replace")
        return lambda b: dec.decode(b)
