"""Atomic file writes: temp file in the same directory, fsync, rename, fsync the directory.

The one writer for every file that must never be seen half-written (state files, the shim's
exit.json, network records, the registry's links, the client's config.json). It imports only
``os`` and ``itertools``: the shim imports it, and each running container pays for the shim's
memory.
"""

from __future__ import annotations

import itertools
import os

_seq = itertools.count()  # next() is atomic under the GIL: unique temp names across threads


def write_atomic(path: str | os.PathLike[str], data: bytes, mode: int = 0o644,
                 sync: bool = True) -> None:
    """Replace ``path`` with ``data`` so readers see the old file or the new, never a mix.

    ``sync=False`` skips both fsyncs: still atomic against a crash of berth, not of the host.
    """
    target = os.fspath(path)
    parent, name = os.path.split(target)
    tmp = os.path.join(parent, f".{name}.{os.getpid()}.{next(_seq)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        try:
            _write_all(fd, data)
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    if sync:
        fsync_dir(parent or ".")


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory, so a rename or create inside it survives a power cut."""
    dfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
