"""Apply a layer tar into a directory, never writing outside it (sync; run it in a thread).

A layer arrives as a stream of (possibly gzip or zstd compressed) bytes. ``LayerWriter``
decompresses it, hashes the uncompressed tar (the diff ID) and passes it through ``TarGuard``,
a streaming tar header scanner that checks every member *before* any byte of it goes on:

- ``..`` components and absolute names are refused;
- a member whose path goes through a symlink the tar planted earlier is refused (the
  "symlink then write through it" attack); so is a hard link whose target is not an earlier
  non-directory member of the same tar, or goes through such a symlink;
- whiteouts (``.wh.x``, ``.wh..wh..opq``) and aufs metadata (``.wh..wh.*``) are taken out of
  the stream and recorded; they become overlay whiteouts (a 0/0 char device) and the
  ``trusted.overlay.opaque=y`` xattr once the tar is applied;
- ``trusted.overlay.*`` xattrs in the tar are never applied (they would steer overlayfs).

The checked stream is extracted by GNU tar (fast: unpacking in pure Python costs ~3x), with
owners, modes, xattrs, hard links, devices and sparse files preserved. Without GNU tar the
same checked stream is applied by ``_PythonApplier``. A refused layer raises ``UnsafeLayer``;
the caller removes the destination directory, so nothing is left behind.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO

from berth.errors import InvalidArgument
from berth.linux.fd import set_pipe_size
from berth.state import rootless

# overlayfs xattrs a layer may never set (the host's, and a rootless engine's userxattr ones)
_OVERLAY_TAR_PREFIXES = ("SCHILY.xattr.trusted.overlay.", "SCHILY.xattr.user.overlay.")

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
META_PREFIX = ".wh..wh."
BLOCK = 512
CHUNK = 1 << 20
PIECE = 128 << 10                # compressed bytes decompressed at a time
PIPE_SIZE = 1 << 20              # capacity of the pipe to tar
IOV_MAX = 1024
_ZERO = bytes(BLOCK)
_EXT_TYPES = frozenset(b"xgLK")  # pax, pax global, GNU long name, GNU long link
MAX_EXT_HEADER = 1 << 20         # as Go's archive/tar (dockerd): bigger is refused


class UnsafeLayer(InvalidArgument):
    pass


class BadLayer(InvalidArgument):
    """Not a valid (compressed) tar stream."""


# -- decompression --------------------------------------------------------------------------------


def _inflater() -> object:
    """A gzip decompressobj: ISA-L's (isal, ~1.7x less CPU than zlib on layers) when it is
    installed, else zlib's; the same interface (eof, unused_data, flush)."""
    if _ISAL is not None:
        return _ISAL.decompressobj(wbits=31)
    return zlib.decompressobj(wbits=31)


_ISAL: Any
try:
    from isal import isal_zlib as _ISAL
except ImportError:  # pragma: no cover - isal is a declared dependency
    _ISAL = None


class Decompressor:
    """Streaming gunzip / zstd / pass-through, chosen by the stream's magic bytes."""

    def __init__(self) -> None:
        self._head = b""
        self._kind: str | None = None
        self._obj: object = None

    @property
    def kind(self) -> str | None:
        return self._kind

    def _start(self, head: bytes) -> None:
        if head[:2] == b"\x1f\x8b":
            self._kind = "gzip"
            self._obj = _inflater()
        elif head[:4] == b"\x28\xb5\x2f\xfd":
            self._kind = "zstd"
            try:
                import zstandard
            except ImportError:
                raise BadLayer("zstd-compressed layers need the zstandard module") from None
            self._zstd = zstandard
            self._obj = zstandard.ZstdDecompressor().decompressobj()
        else:
            self._kind = "tar"

    def feed(self, data: bytes | memoryview) -> bytes | memoryview:
        """Decompressed bytes of ``data`` (for a plain tar, ``data`` itself)."""
        if self._kind is None:
            self._head += data
            if len(self._head) < 4:
                return b""
            data, self._head = self._head, b""
            self._start(data)
        if self._kind == "tar":
            return data
        out = []
        while data:
            try:
                out.append(self._obj.decompress(data))  # type: ignore[attr-defined]
            except (zlib.error, Exception) as e:  # zstd raises its own ZstdError
                raise BadLayer(f"invalid {self._kind} stream: {e}") from None
            rest: bytes = self._obj.unused_data  # type: ignore[attr-defined]
            if rest and self._kind == "gzip" and not rest.strip(b"\0"):
                rest = b""  # trailing zero padding after the last gzip member
            if rest:
                # Concatenated members / frames: a fresh decompressor for the rest.
                if self._kind == "gzip":
                    self._obj = _inflater()
                else:
                    self._obj = self._zstd.ZstdDecompressor().decompressobj()
            data = rest
        return out[0] if len(out) == 1 else b"".join(out)

    def close(self) -> bytes | memoryview:
        if self._kind is None:
            data, self._head = self._head, b""
            self._start(data)
            return self.feed(data) if data else b""
        if self._kind == "gzip":
            obj = self._obj
            tail = obj.flush()  # type: ignore[attr-defined]
            if not obj.eof:  # type: ignore[attr-defined]
                raise BadLayer("invalid gzip stream: unexpected end of data")
            return tail  # type: ignore[no-any-return]
        if self._kind == "zstd" and not getattr(self._obj, "eof", True):
            raise BadLayer("invalid zstd stream: unexpected end of data")
        return b""


# -- the guard ------------------------------------------------------------------------------------


def _parts(name: str) -> list[str]:
    if name.startswith("/"):
        raise UnsafeLayer(f"refusing to unpack {name!r}: absolute path in layer")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise UnsafeLayer(f"refusing to unpack {name!r}: path escapes the layer")
    return parts


def _num(field: bytes) -> int:
    if field and field[0] & 0x80:  # base-256 (GNU) for big values
        n = field[0] & 0x3F
        for b in field[1:]:
            n = (n << 8) | b
        if field[0] & 0x40:
            raise BadLayer("invalid tar header: negative number")
        return n
    s = field.split(b"\0", 1)[0].strip(b" \0")
    if not s:
        return 0
    try:
        return int(s, 8)
    except ValueError:
        raise BadLayer(f"invalid tar header: bad number {field!r}") from None


def _str(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _byte_sum(b: bytes) -> int:
    """sum(b) for at most 256 bytes, in C: Adler-32's low half is 1 + sum(b) mod 65521, and
    256 * 255 < 65520, so no reduction happens (a 4x faster header check than ``sum``)."""
    return (zlib.adler32(b) & 0xFFFF) - 1


def _header_sum(hdr: bytes) -> int:
    """A tar header's checksum: its bytes summed with the checksum field read as 8 spaces."""
    return _byte_sum(hdr[:148]) + 256 + _byte_sum(hdr[156:412]) + _byte_sum(hdr[412:512])


def _round(n: int) -> int:
    return (n + BLOCK - 1) // BLOCK * BLOCK


def _pax(data: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        if data[pos] == 0:
            break
        sp = data.find(b" ", pos)
        if sp < 0:
            raise BadLayer("invalid tar header: bad pax record")
        try:
            n = int(data[pos:sp])
        except ValueError:
            raise BadLayer("invalid tar header: bad pax record") from None
        if n <= 0 or pos + n > len(data):
            raise BadLayer("invalid tar header: bad pax record")
        rec = data[sp + 1:pos + n - 1]
        k, _, v = rec.partition(b"=")
        out[k.decode("utf-8", "surrogateescape")] = v.decode("utf-8", "surrogateescape")
        pos += n
    return out


class TarGuard:
    """Streaming tar scanner: ``feed(bytes) -> bytes`` that are safe to pass on.

    Bytes of a member go out only after its headers were checked; whiteouts and aufs
    metadata are dropped (see ``whiteouts``/``opaques``). After the end-of-archive block
    everything is swallowed, as tar stops reading there too.
    """

    def __init__(self) -> None:
        self.buf = bytearray()
        self.left = 0            # data bytes of the current member still to pass (or drop)
        self.forward = True
        self.ended = False
        self.pending: list[bytes] = []   # extended headers waiting for their member
        self.over: dict[str, str] = {}   # pax / GNU long name overrides for the next member
        self.symlinks: set[str] = set()
        self.dirs: set[str] = set()
        self.files: set[str] = set()     # non-directory members seen (hard link targets)
        self.whiteouts: dict[str, list[str]] = {}  # path of the hidden entry -> its parts
        self.opaques: dict[str, list[str]] = {}
        self.size = 0
        self.members = 0

    def feed(self, data: bytes) -> bytes:
        return b"".join(self.feed_parts(data))

    def feed_parts(self, data: bytes | memoryview) -> list[bytes | memoryview]:
        """Like ``feed``, but the safe bytes come as a list of pieces, member data as views
        into ``data`` (no copy): write them out before ``data`` is reused."""
        out: list[bytes | memoryview] = []
        mv = memoryview(data)
        n = len(mv)
        pos = 0
        if self.buf:
            # A header unit straddled the previous piece: complete it from this one.
            pos = self._complete(mv, out)
            if self.buf:
                return out
        while pos < n and not self.ended:
            if self.left:
                k = min(self.left, n - pos)
                if self.forward:
                    out.append(mv[pos:pos + k])
                pos += k
                self.left -= k
                continue
            used = self._unit(mv, pos, n, out)
            if used < 0:
                self.buf += mv[pos:]
                break
            pos += used
        return out

    def _complete(self, mv: memoryview, out: list[bytes | memoryview]) -> int:
        """Move just the bytes the pending header unit needs from mv into buf and parse it."""
        buf = self.buf
        pos = 0
        while True:
            need = self._need(buf, 0, len(buf))
            if len(buf) >= need:
                break
            take = min(need - len(buf), len(mv) - pos)
            if take <= 0:
                return pos
            buf += mv[pos:pos + take]
            pos += take
        used = self._unit(buf, 0, len(buf), out)
        assert used == len(buf)
        buf.clear()
        return pos

    @staticmethod
    def _need(b: bytearray | memoryview, pos: int, n: int) -> int:
        """Bytes of the header unit at pos: a header, a pax/GNU extended header with its
        body, or an old GNU sparse header with its extension blocks (a lower bound while
        they are incomplete)."""
        if n - pos < BLOCK:
            return BLOCK
        typ = b[pos + 156]
        if typ in _EXT_TYPES:
            size = _num(bytes(b[pos + 124:pos + 136]))
            if size > MAX_EXT_HEADER:
                raise BadLayer(f"invalid tar header: extended header of {size} bytes is too large")
            return BLOCK + _round(size)
        need = BLOCK
        if typ == 0x53 and b[pos + 482]:  # "S": old GNU sparse, extension blocks follow
            while True:
                if n - pos < need + BLOCK:
                    return need + BLOCK
                need += BLOCK
                if not b[pos + need - BLOCK + 504]:
                    return need
        return need

    def _unit(self, b: bytearray | memoryview, pos: int, n: int, out: list[bytes | memoryview]) -> int:
        """Check one header unit at pos; returns the bytes it took, or -1 if incomplete."""
        need = self._need(b, pos, n)
        if n - pos < need:
            return -1
        hdr = bytes(b[pos:pos + BLOCK])
        if hdr == _ZERO:
            self.ended = True
            out.append(_ZERO)
            return BLOCK
        chk = _num(hdr[148:156])
        if chk != _header_sum(hdr):
            raise BadLayer("invalid tar header: checksum mismatch")
        typ = hdr[156:157]
        size = _num(hdr[124:136])
        if typ in (b"x", b"g", b"L", b"K"):
            body = bytes(b[pos + BLOCK:pos + BLOCK + size])
            if typ == b"x":
                self.over.update(_pax(body))
            elif typ == b"g":
                g = _pax(body)
                if "path" in g or "linkpath" in g:
                    raise UnsafeLayer("refusing a global pax header that sets a path")
            elif typ == b"L":
                self.over["path"] = _str(body)
            else:
                self.over["linkpath"] = _str(body)
            self.pending.append(bytes(b[pos:pos + need]))
            return need
        if "size" in self.over:
            try:
                size = int(self.over["size"])
            except ValueError:
                raise BadLayer("invalid tar header: bad pax size") from None
        self.forward = self._check(hdr, typ, size)
        if self.forward:
            out.extend(self.pending)
            out.append(bytes(b[pos:pos + need]))
        self.pending = []
        self.over = {}
        self.left = _round(size)
        return need

    def _check(self, hdr: bytes, typ: bytes, size: int) -> bool:
        """Validate one member; False means drop it (whiteout or aufs metadata)."""
        name = self.over.get("GNU.sparse.name") or self.over.get("path")
        if name is None:
            name = _str(hdr[0:100])
            if hdr[257:265] == b"ustar\x0000":
                prefix = _str(hdr[345:500])
                if prefix:
                    name = f"{prefix}/{name}"
        link = self.over.get("linkpath")
        if link is None:
            link = _str(hdr[157:257])
        parts = _parts(name)
        self.members += 1
        if typ in (b"M", b"N"):
            raise UnsafeLayer(f"refusing to unpack {name!r}: unsupported tar entry type {typ!r}")
        if typ == b"V":
            return True
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in self.symlinks:
                raise UnsafeLayer(f"refusing to unpack {name!r}: it goes through the symlink "
                                  f"{'/'.join(parts[:i])!r} planted by the layer")
        if not parts:
            return True
        path = "/".join(parts)
        base = parts[-1]
        if any(p.startswith(META_PREFIX) and p != OPAQUE for p in parts):
            return False  # aufs metadata (.wh..wh.plnk and friends), as Docker drops it
        if base == OPAQUE:
            self.opaques["/".join(parts[:-1])] = parts[:-1]
            return False
        if base.startswith(WHITEOUT):
            hidden = parts[:-1] + [base[len(WHITEOUT):]]
            if not hidden[-1]:
                raise UnsafeLayer(f"refusing to unpack {name!r}: empty whiteout")
            self.whiteouts["/".join(hidden)] = hidden
            return False
        self.whiteouts.pop(path, None)
        for k, v in self.over.items():
            if k.startswith(_OVERLAY_TAR_PREFIXES):
                raise UnsafeLayer(f"refusing to unpack {name!r}: it sets the overlayfs xattr {k[13:]!r}")
        self.symlinks.discard(path)
        if typ == b"5":
            self.dirs.add(path)
            self.files.discard(path)
            return True
        if path in self.dirs:
            self.dirs.discard(path)
            # Replacing a directory with a non-directory: anything below it is gone too.
            self.files = {f for f in self.files if not f.startswith(path + "/")}
        if typ == b"2":
            self.symlinks.add(path)
        elif typ == b"1":
            lparts = _parts(link)
            if not lparts:
                raise UnsafeLayer(f"refusing to unpack {name!r}: hard link to the layer root")
            for i in range(1, len(lparts) + 1):
                prefix = "/".join(lparts[:i])
                if prefix in self.symlinks and i < len(lparts):
                    raise UnsafeLayer(f"refusing to unpack {name!r}: hard link through the symlink {prefix!r}")
            target = "/".join(lparts)
            if target not in self.files:
                raise UnsafeLayer(f"refusing to unpack {name!r}: hard link to {link!r}, which is not "
                                  "an earlier file of this layer")
            if target in self.symlinks:
                self.symlinks.add(path)
            size = 0
        elif typ in (b"0", b"\0", b"7", b"S"):
            self.size += size
        elif typ not in (b"3", b"4", b"6"):
            raise UnsafeLayer(f"refusing to unpack {name!r}: unknown tar entry type {typ!r}")
        self.files.add(path)
        return True


# -- applying -------------------------------------------------------------------------------------


def _open_dir(root_fd: int, parts: list[str], create: bool = True) -> int:
    """An fd for the directory at parts under root_fd, walked without following any symlink."""
    fd = os.dup(root_fd)
    try:
        for p in parts:
            flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                nfd = os.open(p, flags, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(p, 0o755, dir_fd=fd)
                nfd = os.open(p, flags, dir_fd=fd)
            except OSError as e:
                if e.errno in (20, 40):  # ENOTDIR, ELOOP: a symlink or a file
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


def _finish_whiteouts(dest: Path, guard: TarGuard) -> None:
    root = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for parts in guard.whiteouts.values():
            dfd = _open_dir(root, parts[:-1])
            try:
                _clear(dfd, parts[-1], keep_dir=False)
                os.mknod(parts[-1], stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=dfd)
            finally:
                os.close(dfd)
        for parts in guard.opaques.values():
            dfd = _open_dir(root, parts)
            try:
                os.setxattr(dfd, rootless.overlay_prefix() + "opaque", b"y")
            finally:
                os.close(dfd)
    finally:
        os.close(root)


def gnu_tar() -> str | None:
    path = shutil.which("tar")
    if path is None:
        return None
    try:
        out = subprocess.run([path, "--version"], capture_output=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return path if b"GNU tar" in out else None


_TAR: list[str | None] = []


def _tar_path() -> str | None:
    if not _TAR:
        _TAR.append(None if os.environ.get("BERTH_PY_UNPACK") else gnu_tar())
    return _TAR[0]


class _GnuTar:
    def __init__(self, tar: str, dest: Path):
        # stderr goes to a file: a pipe could fill up while we block writing stdin.
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [tar, "-x", "-f", "-", "-C", str(dest), "--numeric-owner", "--same-owner",
             "--same-permissions", "--xattrs", "--xattrs-include=*",
             f"--xattrs-exclude={rootless.overlay_prefix()}*", "--warning=no-timestamp",
             "--warning=no-unknown-keyword", "--warning=no-xattr-write"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self.err, close_fds=True, bufsize=0)
        self.fd = self.proc.stdin.fileno()  # type: ignore[union-attr]
        try:
            set_pipe_size(self.fd, PIPE_SIZE)  # fewer wake-ups of tar and of us
        except OSError:
            pass

    def write(self, data: bytes) -> None:
        self.write_parts([data])

    def write_parts(self, parts: list[bytes | memoryview]) -> None:
        try:
            _writev_all(self.fd, parts)
        except BrokenPipeError:
            self.close()  # raises with tar's message

    def close(self) -> None:
        try:
            self.proc.stdin.close()  # type: ignore[union-attr]
        except BrokenPipeError:
            pass
        code = self.proc.wait()
        self.err.seek(0)
        err = self.err.read(4096)
        self.err.close()
        if code != 0:
            raise BadLayer(f"unpacking layer: {err.decode(errors='replace').strip() or 'tar failed'}")

    def abort(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        for f in (self.proc.stdin, self.err):
            try:
                f.close()  # type: ignore[union-attr]
            except OSError:
                pass
        self.proc.wait()


def _writev_all(fd: int, parts: list[bytes | memoryview]) -> None:
    """Write every piece (in IOV_MAX batches), resuming after a short write."""
    i = 0
    while i < len(parts):
        batch = parts[i:i + IOV_MAX]
        k = os.writev(fd, batch)
        if k == sum(len(p) for p in batch):
            i += len(batch)
            continue
        while k:
            n = len(parts[i])
            if k >= n:
                k -= n
                i += 1
            else:
                parts[i] = memoryview(parts[i])[k:]
                k = 0


class _PythonApplier:
    """Fallback without GNU tar: spool the checked tar, then apply it member by member."""

    def __init__(self, dest: Path):
        self.dest = dest
        self.spool = tempfile.TemporaryFile(dir=dest.parent)

    def write(self, data: bytes) -> None:
        self.spool.write(data)

    def write_parts(self, parts: list[bytes | memoryview]) -> None:
        for p in parts:
            self.spool.write(p)

    def close(self) -> None:
        self.spool.seek(0)
        root = os.open(self.dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        dir_times: list[tuple[list[str], int]] = []
        try:
            with tarfile.open(fileobj=self.spool, mode="r|", errorlevel=2) as tar:
                for m in tar:
                    _apply_member(tar, m, root, dir_times)
            for parts, mtime in reversed(dir_times):
                fd = _open_dir(root, parts, create=False)
                try:
                    os.utime(fd, (mtime, mtime))
                finally:
                    os.close(fd)
        except tarfile.TarError as e:
            raise BadLayer(f"invalid tar header: {e}") from None
        finally:
            os.close(root)
            self.spool.close()

    def abort(self) -> None:
        self.spool.close()


def _apply_member(tar: tarfile.TarFile, m: tarfile.TarInfo, root: int,
                  dir_times: list[tuple[list[str], int]]) -> None:
    parts = _parts(m.name)
    if not parts:
        return
    *parent, base = parts
    dfd = _open_dir(root, parent)
    try:
        _clear(dfd, base, keep_dir=m.isdir())
        if m.isdir():
            try:
                os.mkdir(base, 0o700, dir_fd=dfd)
            except FileExistsError:
                pass
            dir_times.append((parts, int(m.mtime)))
        elif m.isfile():
            fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=dfd)
            try:
                f = tar.extractfile(m)
                assert f is not None
                left = m.size
                while left > 0:
                    b = f.read(min(left, CHUNK))
                    if not b:
                        break
                    os.write(fd, b)
                    left -= len(b)
                if m.sparse is not None:
                    os.ftruncate(fd, m.size)
            finally:
                os.close(fd)
        elif m.issym():
            os.symlink(m.linkname, base, dir_fd=dfd)
        elif m.islnk():
            *lparent, lbase = _parts(m.linkname)
            lfd = _open_dir(root, lparent, create=False)
            try:
                os.link(lbase, base, src_dir_fd=lfd, dst_dir_fd=dfd, follow_symlinks=False)
            finally:
                os.close(lfd)
            return
        elif m.ischr() or m.isblk():
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            os.mknod(base, kind | (m.mode & 0o7777), os.makedev(m.devmajor, m.devminor), dir_fd=dfd)
        elif m.isfifo():
            os.mkfifo(base, m.mode & 0o7777, dir_fd=dfd)
        else:
            return
        os.chown(base, m.uid, m.gid, dir_fd=dfd, follow_symlinks=False)
        if not m.issym():
            os.chmod(base, m.mode & 0o7777, dir_fd=dfd)
            if not m.isdir():
                os.utime(base, (m.mtime, m.mtime), dir_fd=dfd)
        for k, v in (m.pax_headers or {}).items():
            if k.startswith("SCHILY.xattr.") and not k.startswith(_OVERLAY_TAR_PREFIXES):
                try:
                    os.setxattr(f"/proc/self/fd/{dfd}/{base}", k[len("SCHILY.xattr."):],
                                v.encode("utf-8", "surrogateescape"), follow_symlinks=False)
                except OSError:
                    pass
    finally:
        os.close(dfd)


class LayerWriter:
    """Write a layer's (compressed) bytes as they arrive; ``close()`` -> (diff ID, size).

    ``dest`` must be an empty directory. On any error call ``abort()`` and remove ``dest``.
    """

    def __init__(self, dest: Path):
        self.dest = dest
        self.dec = Decompressor()
        self.guard = TarGuard()
        self.h = hashlib.sha256()
        self.tar_bytes = 0
        tar = _tar_path()
        self.sink: _GnuTar | _PythonApplier = _GnuTar(tar, dest) if tar else _PythonApplier(dest)
        self._tail = False  # the tar ended on a block boundary or an end marker

    def write(self, data: bytes) -> None:
        # Small pieces: the inflated bytes (~2.5x) stay in the CPU cache while they are
        # hashed, checked and written to tar (docs/performance.md, "Pull to disk").
        mv = memoryview(data)
        for i in range(0, len(mv), PIECE):
            raw = self.dec.feed(mv[i:i + PIECE])
            if raw:
                self._raw(raw)

    def _raw(self, raw: bytes | memoryview) -> None:
        self.h.update(raw)
        self.tar_bytes += len(raw)
        out = self.guard.feed_parts(raw)
        if out:
            self.sink.write_parts(out)

    def close(self) -> tuple[str, int]:
        try:
            tail = self.dec.close()
            if tail:
                self._raw(tail)
            g = self.guard
            if not g.ended and (g.left or g.buf or g.pending):
                raise BadLayer("invalid tar: unexpected end of layer data")
            if self.tar_bytes == 0:
                raise BadLayer("invalid tar: empty layer")
            self.sink.write(_ZERO * 2)
            self.sink.close()
        except BaseException:
            self.abort()
            raise
        _finish_whiteouts(self.dest, self.guard)
        return "sha256:" + self.h.hexdigest(), self.guard.size

    def abort(self) -> None:
        self.sink.abort()


def apply_layer(src: BinaryIO, dest: Path) -> tuple[str, int]:
    """Unpack the (possibly compressed) layer tar ``src`` into ``dest``.

    Returns (diff ID, unpacked size in bytes). Raises UnsafeLayer for a hostile tar; the
    caller then deletes ``dest``.
    """
    w = LayerWriter(dest)
    try:
        while True:
            b = src.read(CHUNK)
            if not b:
                break
            w.write(b)
    except BaseException:
        w.abort()
        raise
    return w.close()
