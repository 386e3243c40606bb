"""Apply a layer tar into a directory, never writing outside it (sync; run it in a thread).

Every path is walked from a directory fd with O_NOFOLLOW, one component at a time, so a
symlink planted by the tar (or already in the tree) is never followed; ``..`` and absolute
names are refused. Whiteouts become overlay whiteouts: ``.wh.x`` -> a 0/0 char device ``x``,
``.wh..wh..opq`` -> the ``trusted.overlay.opaque=y`` xattr on its directory.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import tarfile
from pathlib import Path
from typing import BinaryIO

from berth.errors import InvalidArgument

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


class UnsafeLayer(InvalidArgument):
    pass


class _Hashing:
    """A read-only file wrapper that hashes what passes through it."""

    def __init__(self, f: BinaryIO):
        self.f = f
        self.h = hashlib.sha256()
        self.n = 0

    def read(self, size: int = -1) -> bytes:
        b = self.f.read(size)
        self.h.update(b)
        self.n += len(b)
        return b

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


def _decompressed(f: BinaryIO) -> BinaryIO:
    head = f.read(6)
    f.seek(0)
    if head[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=f, mode="rb")  # type: ignore[return-value]
    if head[:4] == b"\x28\xb5\x2f\xfd":
        try:
            import zstandard  # type: ignore[import-not-found]
        except ImportError:
            raise InvalidArgument("zstd-compressed layers need the zstandard module") from None
        return zstandard.ZstdDecompressor().stream_reader(f)  # type: ignore[no-any-return]
    return f


def _parts(name: str) -> list[str]:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise UnsafeLayer(f"refusing to unpack {name!r}: path escapes the layer")
    return parts


class _Tree:
    def __init__(self, root: Path):
        self.root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.dir_times: list[tuple[list[str], int]] = []

    def close(self) -> None:
        os.close(self.root_fd)

    def open_dir(self, parts: list[str], create: bool = True) -> int:
        """An fd for the directory at parts, walked without following any symlink."""
        fd = os.dup(self.root_fd)
        try:
            for p in parts:
                try:
                    nfd = os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(p, 0o755, dir_fd=fd)
                    nfd = os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                except (NotADirectoryError, OSError) as e:
                    if getattr(e, "errno", None) in (20, 40):  # ENOTDIR, ELOOP: a symlink or a file
                        raise UnsafeLayer(f"refusing to unpack through {'/'.join(parts)!r}: not a directory") from None
                    raise
                os.close(fd)
                fd = nfd
            return fd
        except BaseException:
            os.close(fd)
            raise


def _clear(dfd: int, name: str, keep_dir: bool) -> None:
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        if keep_dir:
            return
        _rmtree_at(dfd, name)
    else:
        os.unlink(name, dir_fd=dfd)


def _rmtree_at(dfd: int, name: str) -> None:
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    try:
        for entry in os.listdir(fd):
            st = os.stat(entry, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                _rmtree_at(fd, entry)
            else:
                os.unlink(entry, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dfd)


def apply_layer(src: BinaryIO, dest: Path) -> tuple[str, int]:
    """Unpack the (possibly compressed) layer tar ``src`` into ``dest``.

    Returns (diff ID, unpacked size in bytes). Raises UnsafeLayer for a hostile tar; the
    caller then deletes ``dest``.
    """
    hashing = _Hashing(_decompressed(src))
    tree = _Tree(dest)
    size = 0
    try:
        with tarfile.open(fileobj=hashing, mode="r|", errorlevel=2) as tar:  # type: ignore[call-overload]
            for m in tar:
                size += _apply_member(tar, m, tree)
        hashing.drain()
        for parts, mtime in reversed(tree.dir_times):
            fd = tree.open_dir(parts, create=False)
            try:
                os.utime(fd, (mtime, mtime))
            finally:
                os.close(fd)
    except tarfile.TarError as e:
        raise InvalidArgument(f"invalid tar header: {e}") from None
    finally:
        tree.close()
    return "sha256:" + hashing.h.hexdigest(), size


def _apply_member(tar: tarfile.TarFile, m: tarfile.TarInfo, tree: _Tree) -> int:
    parts = _parts(m.name)
    if not parts:
        return 0
    *parent, base = parts
    dfd = tree.open_dir(parent)
    try:
        if base == OPAQUE:
            os.setxattr(dfd, "trusted.overlay.opaque", b"y")
            return 0
        if base.startswith(WHITEOUT):
            target = base[len(WHITEOUT):]
            _clear(dfd, target, keep_dir=False)
            os.mknod(target, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=dfd)
            return 0
        _clear(dfd, base, keep_dir=m.isdir())
        if m.isdir():
            try:
                os.mkdir(base, 0o700, dir_fd=dfd)
            except FileExistsError:
                pass
            tree.dir_times.append((parts, int(m.mtime)))
        elif m.isfile():
            fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
            try:
                f = tar.extractfile(m)
                assert f is not None
                left = m.size
                while left > 0:
                    b = f.read(min(left, 1 << 20))
                    if not b:
                        break
                    os.write(fd, b)
                    left -= len(b)
            finally:
                os.close(fd)
        elif m.issym():
            os.symlink(m.linkname, base, dir_fd=dfd)
        elif m.islnk():
            lparts = _parts(m.linkname)
            if not lparts:
                raise UnsafeLayer(f"refusing to unpack {m.name!r}: bad hard link")
            *lparent, lbase = lparts
            lfd = tree.open_dir(lparent, create=False)
            try:
                os.link(lbase, base, src_dir_fd=lfd, dst_dir_fd=dfd, follow_symlinks=False)
            finally:
                os.close(lfd)
            return 0
        elif m.ischr() or m.isblk():
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            os.mknod(base, kind | (m.mode & 0o7777), os.makedev(m.devmajor, m.devminor), dir_fd=dfd)
        elif m.isfifo():
            os.mkfifo(base, m.mode & 0o7777, dir_fd=dfd)
        else:
            return 0
        os.chown(base, m.uid, m.gid, dir_fd=dfd, follow_symlinks=False)
        if not m.issym():
            os.chmod(base, m.mode & 0o7777, dir_fd=dfd)
            if not m.isdir():
                os.utime(base, (m.mtime, m.mtime), dir_fd=dfd)
        for k, v in (m.pax_headers or {}).items():
            if k.startswith("SCHILY.xattr."):
                try:
                    os.setxattr(f"/proc/self/fd/{dfd}/{base}", k[len("SCHILY.xattr."):],
                                v.encode("utf-8", "surrogateescape"), follow_symlinks=False)
                except OSError:
                    pass
        return m.size if m.isfile() else 0
    finally:
        os.close(dfd)
