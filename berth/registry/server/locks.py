"""The writers lock of a storage root: every server that may write holds it shared, gc holds it
exclusively, so gc never runs beside a writer and no writer starts during gc (flock(2): the
kernel drops it when the process dies, so a kill -9 leaves no stale lock)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from berth.errors import Conflict


def hold(path: Path, exclusive: bool) -> int:
    """Take the lock without waiting; return its fd (keep it open to keep the lock).

    Raises:
        Conflict: the other side holds it.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        if exclusive:
            raise Conflict(f"a registry server that may write is using {path.parent}: stop it "
                           "or restart it with --read-only before gc") from None
        raise Conflict(f"garbage collection is running on {path.parent}") from None
    return fd
