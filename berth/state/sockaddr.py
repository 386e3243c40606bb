"""Unix socket addresses for paths of any length.

A Unix socket's path must fit in ``sun_path`` (108 bytes with its NUL), and berth's sockets
live under the exec root, which the user chooses (``<exec-root>/shims/<64-hex id>.sock`` is
past the limit with a root of ~40 characters). ``address(path)`` gives the path itself when
it fits, and otherwise reaches the same file through an ``O_PATH`` descriptor of its
directory, ``/proc/self/fd/<n>/<name>``, which the kernel resolves like the long path (runc
and containerd do the same). The descriptor lives as long as the ``with`` block: bind or
connect inside it. The socket file is still at ``path`` for everything else (unlink, exists).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SUN_PATH_MAX = 107  # bytes of sun_path before its terminating NUL


@contextmanager
def address(path: str | Path) -> Iterator[str]:
    """A name for ``path`` that bind() and connect() accept, whatever its length."""
    p = os.fspath(path)
    if len(os.fsencode(p)) <= SUN_PATH_MAX:
        yield p
        return
    head, name = os.path.split(p)
    fd = os.open(head or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        short = f"/proc/self/fd/{fd}/{name}"
        if len(os.fsencode(short)) > SUN_PATH_MAX:
            raise OSError(f"AF_UNIX socket name too long: {name!r}")
        yield short
    finally:
        os.close(fd)
