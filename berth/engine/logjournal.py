"""``docker logs`` for the journald driver: the container's entries read back with journalctl.

dockerd reads the journal through libsystemd; berth runs ``journalctl -o json
CONTAINER_ID_FULL=<id>`` and writes the entries as json-file records (MESSAGE, PRIORITY 3 =
stderr, the entry's realtime timestamp) into a temporary file, which ``logs.LogReader`` then
reads like any container log (since, until, tail, timestamps). ``--follow`` goes on with
``journalctl -f --after-cursor=<the last entry's>`` appending to the same file, which the reader
follows while the container runs, and for a moment after it stopped (journald writes what it
received asynchronously) until the journal has been quiet for ``GRACE`` seconds. Without
journalctl, reading is refused as dockerd refuses it when built without journal support
("configured logging driver does not support reading").

    cursor = await export(cid, path)
    follower = await Follower.start(cid, path, cursor)
    ... LogReader(path, ...).chunks(True, lambda: follower.following(container_running()), ...)
    await follower.close()
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from berth.engine.logdrivers import ReadNotSupported


def _record(entry: dict[str, object]) -> bytes | None:
    msg = entry.get("MESSAGE")
    if isinstance(msg, list):  # journalctl's form of a value that is not UTF-8
        msg = bytes(int(b) for b in msg if isinstance(b, int)).decode("utf-8", "replace")
    if not isinstance(msg, str):
        return None
    usec = int(str(entry.get("__REALTIME_TIMESTAMP") or 0))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(usec // 1_000_000)) + f".{usec % 1_000_000:06d}000Z"
    partial = entry.get("CONTAINER_PARTIAL_MESSAGE") == "true"
    stream = "stderr" if str(entry.get("PRIORITY")) == "3" else "stdout"
    return json.dumps({"log": msg if partial else msg + "\n", "stream": stream, "time": stamp},
                      separators=(",", ":")).encode() + b"\n"


GRACE = 0.5   # seconds the journal must be quiet after the container stopped, when following


# The longest journalctl line read (one entry as JSON). The shim sends lines of 16 KiB or more
# as pieces, which journalctl prints as arrays of numbers when they are not UTF-8 (up to 4
# characters a byte); a longer entry (written by someone else) is passed over.
MAX_ENTRY = 1 << 20


async def _journalctl(*args: str) -> asyncio.subprocess.Process:
    exe = shutil.which("journalctl")
    if exe is None:
        raise ReadNotSupported()
    # --all: without it, -o json prints fields over 4096 bytes as null (the line was lost)
    return await asyncio.create_subprocess_exec(
        exe, "-o", "json", "--all", "--no-pager", "-q", *args, limit=MAX_ENTRY,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)


async def _copy(proc: asyncio.subprocess.Process, f: IO[bytes], on_write: Callable[[], None] = lambda: None) -> str:
    """journalctl's entries into ``f`` as records; returns the last entry's cursor."""
    assert proc.stdout is not None
    cursor = ""
    while True:
        try:
            line = await proc.stdout.readline()
        except ValueError:  # over MAX_ENTRY: dropped (the rest of it is not JSON either)
            continue
        if not line:
            break
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        cursor = str(entry.get("__CURSOR") or cursor)
        rec = _record(entry)
        if rec is not None:
            f.write(rec)
            f.flush()
            on_write()
    return cursor


async def export(container_id: str, dest: Path) -> str:
    """Write the container's journal entries to ``dest`` as json-file records; returns the
    last entry's cursor ("" for none). Raises ReadNotSupported without journalctl."""
    proc = await _journalctl(f"CONTAINER_ID_FULL={container_id}")
    with open(dest, "wb") as f:
        cursor = await _copy(proc, f)
    await proc.wait()
    return cursor


class Follower:
    """``journalctl -f`` for one container, appending its new entries to a file."""

    def __init__(self, proc: asyncio.subprocess.Process, f: IO[bytes]) -> None:
        self.proc = proc
        self.last = time.monotonic()      # the last entry written (or the start)
        self._stopped_at: float | None = None
        self._f = f
        self._task = asyncio.ensure_future(_copy(proc, f, self._wrote))

    def _wrote(self) -> None:
        self.last = time.monotonic()

    @classmethod
    async def start(cls, container_id: str, dest: Path, cursor: str) -> Follower:
        after = [f"--after-cursor={cursor}"] if cursor else []
        proc = await _journalctl("-f", "--no-tail", *after, f"CONTAINER_ID_FULL={container_id}")
        return cls(proc, open(dest, "ab"))

    def following(self, container_running: bool) -> bool:
        """Whether a reader should keep following: while the container runs, then until the
        journal has been quiet for GRACE seconds."""
        if container_running:
            self._stopped_at = None
            return True
        now = time.monotonic()
        if self._stopped_at is None:
            self._stopped_at = now
        return now - max(self._stopped_at, self.last) < GRACE

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        self._task.cancel()
        try:
            await self._task
        except (asyncio.CancelledError, Exception):  # noqa: BLE001 - a follow that ends
            pass
        await self.proc.wait()
        self._f.close()
