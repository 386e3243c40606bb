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


class Ordered:
    """The streams of stages that build at once, written in Dockerfile order, so the output
    reads as the classic builder's (one stage after the other): the first unfinished stage's
    messages go out as they come, a later stage's are held until every stage before it is
    done. On a failure ``flush`` writes everything held, in order, before the error."""

    def __init__(self, emit: Callable[[dict[str, Any]], None], n: int):
        self._emit = emit
        self._held: list[list[dict[str, Any]]] = [[] for _ in range(n)]
        self._done = [False] * n
        self._head = 0

    def sink(self, k: int) -> Callable[[dict[str, Any]], None]:
        def put(msg: dict[str, Any]) -> None:
            if k == self._head:
                self._emit(msg)
            else:
                self._held[k].append(msg)
        return put

    def close(self, k: int) -> None:
        self._done[k] = True
        while self._head < len(self._done) and self._done[self._head]:
            self._head += 1
            if self._head < len(self._done):
                self._release(self._head)

    def flush(self) -> None:
        for k in range(self._head, len(self._done)):
            self._release(k)
        self._head = len(self._done)

    def _release(self, k: int) -> None:
        held, self._held[k] = self._held[k], []
        for m in held:
            self._emit(m)


def excerpt(name: str, text: bytes | str, line: int, end_line: int, around: int = 2) -> str:
    """The lines of a failed instruction with some context, framed as BuildKit prints it
    above an error (``Dockerfile:3``, then ``   3 | >>> RUN false``)."""
    lines = (text.decode("utf-8", "replace") if isinstance(text, bytes) else text).splitlines()
    end_line = max(line, min(end_line, len(lines)))
    first, last = max(1, line - around), min(len(lines), end_line + around)
    rule = "-" * 20 + "\n"
    body = "".join(f"{n:>4} | {'>>>' if line <= n <= end_line else '   '} {lines[n - 1]}".rstrip() + "\n"
                   for n in range(first, last + 1))
    return f"{name}:{line}\n{rule}{body}{rule}"
