"""``docker logs`` for the journald driver: the container's entries read back with journalctl.

dockerd reads the journal through libsystemd; berth runs ``journalctl -o json
CONTAINER_ID_FULL=<id>`` and writes the entries as json-file records (MESSAGE, PRIORITY 3 =
stderr, the entry's realtime timestamp) into a temporary file, which ``logs.LogReader`` then
reads like any container log (since, until, tail, timestamps). ``--follow`` returns what the
journal holds at the time. Without journalctl, reading is refused as dockerd refuses it when
built without journal support ("configured logging driver does not support reading").
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path

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


async def export(container_id: str, dest: Path) -> None:
    """Write the container's journal entries to ``dest`` as json-file records; raises
    ReadNotSupported without journalctl."""
    exe = shutil.which("journalctl")
    if exe is None:
        raise ReadNotSupported()
    proc = await asyncio.create_subprocess_exec(
        exe, "-o", "json", "--no-pager", "-q", f"CONTAINER_ID_FULL={container_id}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    assert proc.stdout is not None
    with open(dest, "wb") as f:
        async for line in proc.stdout:
            try:
                rec = _record(json.loads(line))
            except ValueError:
                continue
            if rec is not None:
                f.write(rec)
    await proc.wait()
