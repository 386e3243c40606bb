"""Rendering the classic builder's JSON stream: ``plain`` (as the docker CLI prints it) and a
live terminal view (``auto`` on a tty).

The stream is Docker's: ``{"stream": "Step 2/5 : RUN ..."}``, `` ---> Running in <id>``, the
step's output, `` ---> Using cache``, `` ---> <id>`` (the step is done), ``Successfully built``,
``{"aux": {"ID": ...}}`` and, on failure, ``{"errorDetail": {"message", "code"}, "error"}``.

The live view keeps finished steps as one permanent line each (``=> [2/5] RUN ...  0.3s``, or
``CACHED``) and redraws only a small region below them: the running step with its elapsed time
and its last few output lines, and a ``[+] Building`` summary line.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import Any, TextIO

STEP_RE = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
DONE_RE = re.compile(r"^ ---> ([0-9a-f]{12,64})$")
TAIL = 6


class BuildFailed(Exception):
    """The daemon reported an error inside the stream; ``code`` is docker's exit status."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or 1


class Result:
    def __init__(self) -> None:
        self.image_id = ""
        self.stream_text: list[str] = []


def _messages(lines: Iterable[bytes]) -> Iterable[dict[str, Any]]:
    for raw in lines:
        try:
            msg = json.loads(raw)
        except ValueError:
            continue
        if isinstance(msg, dict):
            yield msg


def _check_error(msg: dict[str, Any]) -> None:
    if msg.get("error") or msg.get("errorDetail"):
        detail = msg.get("errorDetail") or {}
        code: int = detail["code"] if isinstance(detail.get("code"), int) else 1
        raise BuildFailed(msg.get("error") or detail.get("message") or "unknown error", code)


def _aux_id(msg: dict[str, Any], result: Result) -> bool:
    aux = msg.get("aux")
    if aux is None:
        return False
    if isinstance(aux, dict) and isinstance(aux.get("ID"), str):
        result.image_id = aux["ID"]
    return True


def _status_line(msg: dict[str, Any]) -> str | None:
    """A pull-progress message as one line, or None for progress-bar updates."""
    if msg.get("progress") or (msg.get("progressDetail") or {}).get("total"):
        return None
    status = msg.get("status")
    if status is None:
        return None
    ident = msg.get("id")
    return f"{ident}: {status}" if ident else str(status)


def _shown(lines: Iterable[bytes], result: Result) -> Iterator[dict[str, Any]]:
    """The messages to show: an error message raises, the image ID (aux) goes into ``result``."""
    for msg in _messages(lines):
        _check_error(msg)
        if not _aux_id(msg, result):
            yield msg


def render_plain(lines: Iterable[bytes], out: TextIO) -> Result:
    """Print the stream as the docker CLI does off a terminal."""
    result = Result()
    for msg in _shown(lines, result):
        if msg.get("stream") is not None:
            out.write(str(msg["stream"]))
            out.flush()
            continue
        text = _status_line(msg)
        if text is not None:
            out.write(text + "\n")
    return result


def render_quiet(lines: Iterable[bytes]) -> Result:
    result = Result()
    for msg in _shown(lines, result):
        if msg.get("stream") is not None:
            result.stream_text.append(str(msg["stream"]))
    return result


class _Step:
    def __init__(self, label: str, title: str) -> None:
        self.label = label
        self.title = title
        self.start = time.monotonic()
        self.end: float | None = None
        self.cached = False
        self.output: list[str] = []

    def elapsed(self) -> float:
        return (self.end or time.monotonic()) - self.start


class TtyView:
    """The live view. ``feed`` takes stream lines; a thread refreshes the timers."""

    def __init__(self, out: TextIO, context_size: str = "") -> None:
        self.out = out
        self.start = time.monotonic()
        self.steps: list[_Step] = []
        self.current: _Step | None = None
        self.total = 0
        self.drawn = 0
        self.finals: list[str] = []
        self.context_size = context_size
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._tick, daemon=True)

    # -- input ---------------------------------------------------------------------------------

    def line(self, text: str) -> None:
        with self.lock:
            self._line(text)
            self._draw()

    def _line(self, text: str) -> None:
        m = STEP_RE.match(text)
        if m:
            self._finish_current()
            self.total = int(m.group(2))
            self.current = _Step(f"[{m.group(1)}/{m.group(2)}]", m.group(3))
            self.steps.append(self.current)
            return
        step = self.current
        if text.startswith(" ---> Running in ") or text.startswith("Removing intermediate container"):
            return
        if text == " ---> Using cache":
            if step:
                step.cached = True
            return
        if DONE_RE.match(text):
            self._finish_current()
            return
        if text.startswith("Successfully built ") or text.startswith("Successfully tagged "):
            self._finish_current()
            self.finals.append(text)
            return
        if step is not None:
            step.output.append(text)
            del step.output[:-200]
        elif text.strip():
            self.finals.append(text)

    def _finish_current(self) -> None:
        step = self.current
        if step is None:
            return
        step.end = time.monotonic()
        self.current = None
        self._clear()
        self._permanent(step, "CACHED " if step.cached else "")

    def fail(self) -> None:
        """The stream ended with an error: show the running step and its output."""
        with self.lock:
            self._stop_thread()
            step = self.current
            self._clear()
            if step is not None:
                step.end = time.monotonic()
                self._permanent(step, "ERROR ")
                width = self._width()
                self.out.write("------\n" + _fit(f" > {step.label} {step.title}:", width) + "\n")
                for text in step.output[-20:]:
                    self.out.write(_fit(text, width) + "\n")
                self.out.write("------\n")
            self.out.flush()

    def finish(self) -> None:
        with self.lock:
            self._stop_thread()
            self._finish_current()
            self._clear()
            self.out.write(self._summary(done=True) + "\n")
            for text in self.finals:
                self.out.write(text + "\n")
            self.out.flush()

    # -- drawing -------------------------------------------------------------------------------

    def run(self) -> None:
        self.thread.start()

    def _stop_thread(self) -> None:
        self.stopped.set()

    def _tick(self) -> None:
        while not self.stopped.wait(0.1):
            with self.lock:
                if not self.stopped.is_set():
                    self._draw()

    @staticmethod
    def _width() -> int:
        try:
            return max(20, os.get_terminal_size(sys.stdout.fileno()).columns)
        except (OSError, ValueError):
            return 80

    def _summary(self, done: bool = False) -> str:
        finished = sum(1 for s in self.steps if s.end is not None)
        head = "[+] Building" if not done else "[+] Built"
        total = self.total or len(self.steps)
        return f"{head} {time.monotonic() - self.start:.1f}s ({finished}/{total})"

    def _permanent(self, step: _Step, tag: str) -> None:
        width = self._width()
        self.out.write(_timed(f" => {tag}{step.label} {step.title}", f"{step.elapsed():.1f}s", width) + "\n")

    def _clear(self) -> None:
        if self.drawn:
            self.out.write(f"\x1b[{self.drawn}A\r\x1b[J")
            self.drawn = 0

    def _draw(self) -> None:
        width = self._width()
        rows = [self._summary()]
        if self.context_size and not self.steps:
            rows.append(f" => transferring context: {self.context_size}")
        step = self.current
        if step is not None:
            rows.append(_timed(f" => {step.label} {step.title}", f"{step.elapsed():.1f}s", width))
            rows += [_fit(f" => => {text}", width) for text in step.output[-TAIL:]]
        self._clear()
        self.out.write("".join(_fit(r, width) + "\n" for r in rows))
        self.out.flush()
        self.drawn = len(rows)


def _fit(text: str, width: int) -> str:
    text = text.replace("\r", "").replace("\t", "    ")
    text = "".join(ch for ch in text if ch >= " " or ch == "\x1b")
    return text if len(text) < width else text[: width - 1]


def _timed(left: str, right: str, width: int) -> str:
    room = width - len(right) - 2
    if len(left) > room:
        left = left[: max(0, room - 3)] + "..."
    return left.ljust(room) + " " + right


def render_tty(lines: Iterable[bytes], out: TextIO, context_size: str = "") -> Result:
    result = Result()
    view = TtyView(out, context_size)
    view.run()
    pending = ""
    try:
        for msg in _messages(lines):
            _check_error(msg)
            if _aux_id(msg, result):
                continue
            if msg.get("stream") is not None:
                pending += str(msg["stream"])
                *complete, pending = pending.split("\n")
                for text in complete:
                    view.line(text)
                continue
            status = _status_line(msg)
            if status is not None:
                view.line(status)
        if pending:
            view.line(pending)
    except BuildFailed:
        if pending:
            view.line(pending)
        view.fail()
        raise
    except BaseException:
        view.fail()
        raise
    view.finish()
    return result
