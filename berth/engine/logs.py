"""Reading a container's json-file log (written by its shim): filter, tail, follow.

The shim rotates the log (``log.1`` .. ``log.N``, gzipped as ``log.N.gz`` with ``compress``);
reading goes through the rotated files, oldest first, then the live one, and a follow
reopens the live file when it was rotated under it.

The file is read in large blocks and each block is turned into the response's bytes at once
(``logscan``: no JSON decode per line in the common case); ``--tail`` reads the files backwards
from the end until it has its lines, and ``--since`` bisects a file by the lines' times (the
shim writes them in order) instead of scanning it from the start.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, AsyncIterator, Callable, Iterator, Protocol, TypeVar

from berth.errors import InvalidArgument
from berth.engine.logscan import Filter, line_time, render, select, time_key

T = TypeVar("T")


class Reader(Protocol):
    """What reading whole-line blocks needs: a plain log file or a gzipped rotated one."""

    def read(self, size: int = -1, /) -> bytes: ...
    def tell(self) -> int: ...
    def seek(self, offset: int, whence: int = 0, /) -> int: ...


Render = Callable[[bytes], list[T]]  # a block of whole lines -> one item per selected line

BLOCK = 1 << 20  # bytes read (and rendered) at a time
_SEEK_MIN = 1 << 16  # bisect --since down to this span, then scan


def parse_time(v: str | None) -> float | None:
    """Docker's since/until: unix seconds (with fraction), or an RFC 3339 time."""
    if v is None or v == "" or v == "0":
        return None
    try:
        return float(v)
    except ValueError:
        pass
    try:
        s = v.replace("Z", "+00:00")
        if "." in s:
            head, frac = s.split(".", 1)
            digits = "".join(ch for ch in frac if ch.isdigit())
            rest = frac[len(digits):]
            s = f"{head}.{digits[:6]}{rest}"
        dt = datetime.fromisoformat(s)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return dt.timestamp()
    except ValueError:
        raise InvalidArgument(f'invalid value for "since": failed to parse value as time or duration: "{v}"') from None


def _key(v: float | str | None) -> bytes | None:
    """since/until as a time key (None: no bound); a string is validated as parse_time does."""
    if isinstance(v, str):
        t = parse_time(v)
        return time_key(v) if t is not None and t > 0 else None
    if v is None or v <= 0:
        return None
    whole = int(v)
    return time_key(f"{whole}.{min(round((v - whole) * 1e9), 999_999_999):09d}")


class LogReader:
    """One ``docker logs`` read. ``since``/``until`` are Docker's values (strings, kept exact to
    the nanosecond) or unix seconds; ``tail`` None or negative: every line."""

    def __init__(self, path: Path, stdout: bool, stderr: bool, since: float | str | None,
                 until: float | str | None, timestamps: bool, tail: int | None):
        self.path = path
        self.stdout = stdout
        self.stderr = stderr
        self.since = _key(since)
        self.until = _key(until)
        self.timestamps = timestamps
        self.tail = tail if tail is not None and tail >= 0 else None

    def _filter(self, raw: bool) -> Filter:
        return Filter(self.stdout, self.stderr, self.since, self.until, self.timestamps, raw)

    # -- the files --------------------------------------------------------------------------

    def _rotated(self) -> list[Path]:
        """The rotated files, oldest first (log.1 wins over a log.1.gz being written)."""
        found: dict[int, Path] = {}
        pat = re.compile(re.escape(self.path.name) + r"\.(\d+)(\.gz)?")
        try:
            names = os.listdir(self.path.parent)
        except FileNotFoundError:
            return []
        for name in names:
            m = pat.fullmatch(name)
            if m and (int(m.group(1)) not in found or not m.group(2)):
                found[int(m.group(1))] = self.path.parent / name
        return [p for _, p in sorted(found.items(), reverse=True)]

    def _blocks(self, f: Reader, end: int | None = None) -> Iterator[bytes]:
        """Whole-line blocks from f's position (to ``end``); a last line without its newline
        is left unread (f is positioned at its start)."""
        pending = b""
        left = end - f.tell() if end is not None else -1
        while left != 0:
            chunk = f.read(BLOCK if left < 0 else min(BLOCK, left))
            if not chunk:
                break
            left -= len(chunk) if left > 0 else 0
            cut = chunk.rfind(b"\n") + 1
            if cut == 0:
                pending += chunk
                continue
            block, pending = pending + chunk[:cut], chunk[cut:]
            yield block
        if pending:
            f.seek(-len(pending), os.SEEK_CUR)

    def _old_blocks(self, p: Path) -> Iterator[bytes]:
        """A rotated file's whole-line blocks (skipped if it vanished meanwhile)."""
        try:
            f = gzip.open(p, "rb") if p.suffix == ".gz" else open(p, "rb")
        except (FileNotFoundError, OSError):
            return
        try:
            if self.since is not None and isinstance(f, io.BufferedReader):  # not gzipped
                self._seek_since(f)
            yield from self._blocks(f)
        except (OSError, EOFError):
            return  # rotated away, or being compressed, meanwhile
        finally:
            f.close()

    def _seek_since(self, f: IO[bytes]) -> None:
        """Position f at a line boundary before the first line at or after ``since``: bisect by
        the lines' times (in file order, as the shim writes them)."""
        assert self.since is not None
        lo, hi = 0, os.fstat(f.fileno()).st_size
        while hi - lo > _SEEK_MIN:
            mid = (lo + hi) // 2
            f.seek(mid)
            f.readline()  # the rest of the line mid falls in
            t = line_time(f.readline())
            if t is not None and t < self.since:
                lo = mid
            else:
                hi = mid
        f.seek(lo)
        if lo:
            f.readline()

    # -- tail: backwards from the end -------------------------------------------------------

    def _tail_plain(self, f: IO[bytes], end: int, need: int, fn: Render[T]) -> list[T]:
        """The last ``need`` selected lines of f's bytes [0, end), read backwards."""
        out: list[T] = []
        pos, carry, size = end, b"", 1 << 16
        while pos > 0 and len(out) < need:
            n = min(size, pos)
            pos -= n
            f.seek(pos)
            chunk = f.read(n) + carry
            carry = b""
            if pos > 0:  # the first line may have begun before pos: read it with the next chunk
                cut = chunk.find(b"\n") + 1
                carry, chunk = chunk[:cut] if cut else chunk, chunk[cut:] if cut else b""
            if chunk:
                out = fn(chunk) + out
            size = min(size * 2, BLOCK * 4)
        return out[-need:] if need else []

    def _tail_old(self, p: Path, need: int, fn: Render[T]) -> list[T]:
        if p.suffix == ".gz":
            out: list[T] = []
            for block in self._old_blocks(p):
                out = (out + fn(block))[-need:]
            return out
        try:
            with open(p, "rb") as f:
                return self._tail_plain(f, os.fstat(f.fileno()).st_size, need, fn)
        except (FileNotFoundError, OSError):
            return []

    def _tail(self, f: IO[bytes], fn: Render[T]) -> list[T]:
        """The last ``tail`` selected lines across the rotated files and the live one (f);
        leaves f after the last whole line."""
        assert self.tail is not None
        end = os.fstat(f.fileno()).st_size
        f.seek(max(0, end - (1 << 16)))
        last = f.read()
        end -= len(last) - (last.rfind(b"\n") + 1)  # not a line yet: the follow reads it
        out = self._tail_plain(f, end, self.tail, fn)
        for p in reversed(self._rotated()):
            if len(out) >= self.tail:
                break
            out = self._tail_old(p, self.tail - len(out), fn) + out
        f.seek(end)
        return out[-self.tail:] if self.tail else []

    # -- reading ----------------------------------------------------------------------------

    def _history(self, f: IO[bytes], fn: Render[T]) -> Iterator[list[T]]:
        """What the log holds now, as lists of rendered lines; leaves f after the last whole line."""
        if self.tail is not None:
            out = self._tail(f, fn)
            for i in range(0, len(out), 4096):
                yield out[i:i + 4096]
            return
        for p in self._rotated():
            for block in self._old_blocks(p):
                yield fn(block)
        if self.since is not None:
            self._seek_since(f)
        for block in self._blocks(f):
            yield fn(block)

    async def _follow(self, f: IO[bytes], fn: Render[T], running: Callable[[], bool], poll: float
                      ) -> AsyncIterator[list[T]]:
        """New lines as the shim writes them, until the container stops."""
        while True:
            try:
                while True:
                    alive = running()
                    got = False
                    for block in self._blocks(f):
                        got = True
                        yield fn(block)
                    if got:
                        continue
                    if not alive:
                        return
                    try:
                        rotated = os.stat(self.path).st_ino != os.fstat(f.fileno()).st_ino
                    except FileNotFoundError:
                        rotated = False
                    if rotated:  # the shim rotated the log: what is left was read above
                        break
                    await asyncio.sleep(poll)
            finally:
                f.close()
            try:
                f = open(self.path, "rb")
            except FileNotFoundError:
                return

    async def _lines(self, fn: Render[T], follow: bool, running: Callable[[], bool], poll: float
                     ) -> AsyncIterator[list[T]]:
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return
        following = False
        try:
            for items in self._history(f, fn):
                yield items
            if follow:
                following = True  # _follow owns f now (it reopens it on rotation)
                async for items in self._follow(f, fn, running, poll):
                    yield items
        finally:
            if not following:
                f.close()

    async def chunks(self, follow: bool, running: Callable[[], bool], raw: bool, poll: float = 0.05
                     ) -> AsyncIterator[bytes]:
        """The response body in large pieces: stdcopy frames (one per line, as Docker sends
        them), or bare payloads with ``raw`` (a tty container)."""
        flt = self._filter(raw)
        async for pieces in self._lines(lambda block: render(block, flt), follow, running, poll):
            if pieces:
                yield b"".join(pieces)

    async def read(self, follow: bool, running: Callable[[], bool], poll: float = 0.05
                   ) -> AsyncIterator[tuple[int, bytes]]:
        """Line by line: (stream, payload) of each selected line (attach's log replay)."""
        flt = self._filter(True)
        async for items in self._lines(lambda block: select(block, flt), follow, running, poll):
            for item in items:
                yield item
