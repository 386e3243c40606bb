"""The build context as the docker CLI prepares it: a tar stream, produced while it is sent.

- A directory is walked in sorted order and written as an uncompressed tar (uid/gid 0, modes
  and mtimes kept, hard links as links), skipping what ``.dockerignore`` excludes. The Dockerfile
  and ``.dockerignore`` are always sent (the daemon drops them if they are ignored).
- A Dockerfile outside the context (or read from stdin) is added under a random name
  ``.dockerfile.<hex>``, and that name is appended to ``.dockerignore`` so that it does not end
  up in the image, exactly as the docker CLI does.
- ``-`` reads stdin: a tar (optionally compressed: sent as is) or a bare Dockerfile (sniffed).

Nothing is held in memory beyond one block of one file.
"""

from __future__ import annotations

import os
import stat
import tarfile

from berth.schema.dockerignore import Matcher, parse

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import BinaryIO

BLOCK = 512
READ_SIZE = 1 << 20


class ContextError(Exception):
    """The context or Dockerfile could not be prepared (docker: ``unable to prepare context``)."""


class Stats:
    """Bytes produced so far (the CLI prints ``Sending build context to Docker daemon``)."""

    def __init__(self) -> None:
        self.sent = 0


def _pad(size: int) -> bytes:
    rest = size % BLOCK
    return b"\0" * (BLOCK - rest) if rest else b""


def _member(name: str, data: bytes, mode: int = 0o644, mtime: float = 0) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = int(mtime)
    return info.tobuf(tarfile.PAX_FORMAT) + data + _pad(len(data))


def random_dockerfile_name() -> str:
    return ".dockerfile." + os.urandom(10).hex()


def resolve_dockerfile(context: str, dockerfile: str) -> tuple[str, str | None]:
    """Return (name to send as ``dockerfile=``, path of a file to add, or None if inside).

    Raises ContextError as the docker CLI words it.
    """
    ctx = os.path.realpath(context)
    if not dockerfile:
        path = os.path.join(ctx, "Dockerfile")
        if not os.path.lexists(path) and os.path.lexists(os.path.join(ctx, "dockerfile")):
            path = os.path.join(ctx, "dockerfile")
    else:
        path = dockerfile if os.path.isabs(dockerfile) else os.path.join(os.getcwd(), dockerfile)
    real = os.path.realpath(path)
    if not os.path.exists(real):
        shown = dockerfile or "Dockerfile"
        raise ContextError(f"Cannot locate specified Dockerfile: {shown}")
    if os.path.isdir(real):
        raise ContextError(f"Cannot locate specified Dockerfile: {dockerfile or 'Dockerfile'}")
    rel = os.path.relpath(real, ctx)
    if rel.startswith(".." + os.sep) or rel == "..":
        return "", real
    return rel.replace(os.sep, "/"), None


def read_ignore(context: str) -> str:
    try:
        with open(os.path.join(context, ".dockerignore"), encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def dir_tar(context: str, dockerfile_rel: str, extra_dockerfile: bytes | None,
            extra_name: str, stats: Stats) -> Iterator[bytes]:
    """Yield the tar of ``context``; ``extra_dockerfile`` (if any) is added as ``extra_name``."""
    ignore_text = read_ignore(context)
    patterns = parse(ignore_text)
    keep = {".dockerignore", dockerfile_rel} if dockerfile_rel else {".dockerignore"}
    patterns += [f"!{k}" for k in sorted(keep)]
    matcher = Matcher(patterns)
    links: dict[tuple[int, int], str] = {}
    for block in _walk(context, "", matcher, links, extra_name if extra_dockerfile is not None else ""):
        stats.sent += len(block)
        yield block
    if extra_dockerfile is not None:
        for block in (_member(extra_name, extra_dockerfile),
                      _member(".dockerignore", _ignore_with(ignore_text, extra_name))):
            stats.sent += len(block)
            yield block
    end = b"\0" * (BLOCK * 2)
    stats.sent += len(end)
    yield end


def _ignore_with(text: str, name: str) -> bytes:
    base = text if text else ".dockerignore"
    return (base + "\n" + name + "\n").encode()


def _walk(root: str, rel: str, matcher: Matcher, links: dict[tuple[int, int], str],
          replace_ignore: str) -> Iterator[bytes]:
    try:
        names = sorted(os.listdir(os.path.join(root, rel)))
    except OSError as exc:
        raise ContextError(f"error checking context: can't stat '{os.path.join(root, rel)}'") from exc
    for name in names:
        path = f"{rel}/{name}" if rel else name
        full = os.path.join(root, path)
        st = os.lstat(full)
        is_dir = stat.S_ISDIR(st.st_mode)
        if matcher.excluded(path, is_dir):
            if is_dir and matcher.may_contain_included(path):
                yield from _walk(root, path, matcher, links, replace_ignore)
            continue
        if replace_ignore and path == ".dockerignore":
            continue  # rewritten at the end, with the added Dockerfile's name
        yield from _entry(full, path, st, links)
        if is_dir:
            yield from _walk(root, path, matcher, links, replace_ignore)


def _entry(full: str, path: str, st: os.stat_result, links: dict[tuple[int, int], str]) -> Iterator[bytes]:
    info = tarfile.TarInfo(path)
    info.mode = stat.S_IMODE(st.st_mode)
    info.mtime = int(st.st_mtime)
    info.uid = info.gid = 0
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(full)
    elif stat.S_ISREG(mode):
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in links:
            info.type = tarfile.LNKTYPE
            info.linkname = links[key]
        else:
            if st.st_nlink > 1:
                links[key] = path
            info.size = st.st_size
    elif stat.S_ISFIFO(mode):
        info.type = tarfile.FIFOTYPE
    else:
        return  # sockets and devices are not part of a build context
    yield info.tobuf(tarfile.PAX_FORMAT)
    if info.type == tarfile.REGTYPE:
        yield from _file_blocks(full, st.st_size)


def _file_blocks(full: str, size: int) -> Iterator[bytes]:
    try:
        f = open(full, "rb")
    except OSError as exc:
        raise ContextError(f"error checking context: can't open '{full}': {exc.strerror}") from exc
    left = size
    with f:
        while left > 0:
            data = f.read(min(READ_SIZE, left))
            if not data:
                raise ContextError(f"error checking context: '{full}' changed while being read")
            left -= len(data)
            yield data
    yield _pad(size)


def sniff_stdin(stream: BinaryIO) -> tuple[bytes, bool]:
    """Peek at stdin: return (the bytes read so far, whether it is an archive)."""
    head = b""
    while len(head) < BLOCK:
        data = stream.read(BLOCK - len(head))
        if not data:
            break
        head += data
    return head, is_archive(head)


def is_archive(head: bytes) -> bool:
    if head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")):
        return True
    return len(head) >= 262 and head[257:262] == b"ustar"


def stream_rest(head: bytes, stream: BinaryIO, stats: Stats) -> Iterator[bytes]:
    if head:
        stats.sent += len(head)
        yield head
    while True:
        data = stream.read(READ_SIZE)
        if not data:
            return
        stats.sent += len(data)
        yield data


def single_dockerfile_tar(content: bytes, stats: Stats) -> Iterator[bytes]:
    """The context of ``berth build - < Dockerfile``: just the Dockerfile."""
    for block in (_member("Dockerfile", content), b"\0" * (BLOCK * 2)):
        stats.sent += len(block)
        yield block
