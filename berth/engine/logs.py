"""Reading a container's json-file log (written by its shim): filter, tail, follow.

The shim rotates the log (``log.1`` .. ``log.N``, gzipped as ``log.N.gz`` with ``compress``);
reading goes through the rotated files, oldest first, then the live one, and a follow
reopens the live file when it was rotated under it.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import AsyncIterator, Callable

from berth.errors import InvalidArgument


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


def _ts(t: str) -> float:
    return parse_time(t) or 0.0


class LogReader:
    def __init__(self, path: Path, stdout: bool, stderr: bool, since: float | None, until: float | None,
                 timestamps: bool, tail: int | None):
        self.path = path
        self.stdout = stdout
        self.stderr = stderr
        self.since = since
        self.until = until
        self.timestamps = timestamps
        self.tail = tail

    def _render(self, line: bytes) -> tuple[int, bytes] | None:
        try:
            rec = json.loads(line)
        except ValueError:
            return None
        stream = 1 if rec.get("stream") == "stdout" else 2
        if (stream == 1 and not self.stdout) or (stream == 2 and not self.stderr):
            return None
        if self.since is not None or self.until is not None:
            t = _ts(rec.get("time", ""))
            if self.since is not None and t < self.since:
                return None
            if self.until is not None and t > self.until:
                return None
        data = rec.get("log", "").encode()
        if self.timestamps:
            data = rec.get("time", "").encode() + b" " + data
        return stream, data

    def _rotated(self) -> bytes:
        """The rotated files' lines, oldest first (log.1 wins over a log.1.gz being written)."""
        found: dict[int, Path] = {}
        pat = re.compile(re.escape(self.path.name) + r"\.(\d+)(\.gz)?")
        try:
            names = os.listdir(self.path.parent)
        except FileNotFoundError:
            return b""
        for name in names:
            m = pat.fullmatch(name)
            if m and (int(m.group(1)) not in found or not m.group(2)):
                found[int(m.group(1))] = self.path.parent / name
        out = []
        for _, p in sorted(found.items(), reverse=True):
            try:
                if p.suffix == ".gz":
                    with gzip.open(p, "rb") as g:
                        out.append(g.read())
                else:
                    out.append(p.read_bytes())
            except (FileNotFoundError, OSError, EOFError):
                continue  # rotated away (or being compressed) meanwhile
        return b"".join(out)

    async def read(self, follow: bool, running: Callable[[], bool], poll: float = 0.05
                   ) -> AsyncIterator[tuple[int, bytes]]:
        old = self._rotated()
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return
        try:
            lines = (old + f.read()).splitlines(keepends=True)
            pending = b""
            if lines and not lines[-1].endswith(b"\n"):
                pending = lines.pop()
            out = [r for r in (self._render(x) for x in lines) if r is not None]
            if self.tail is not None and self.tail >= 0:
                out = out[-self.tail:] if self.tail else []
            for r in out:
                yield r
            if not follow:
                return
            while True:
                alive = running()
                chunk = f.read()
                if chunk:
                    chunk = pending + chunk
                    parts = chunk.split(b"\n")
                    pending = parts.pop()
                    for p in parts:
                        r = self._render(p)
                        if r is not None:
                            yield r
                    continue
                if not alive:
                    return
                try:
                    rotated = os.stat(self.path).st_ino != os.fstat(f.fileno()).st_ino
                except FileNotFoundError:
                    rotated = False
                if rotated:  # the shim rotated the log: what is left was read above
                    f.close()
                    f = open(self.path, "rb")
                    continue
                await asyncio.sleep(poll)
        finally:
            f.close()
