"""The streaming tar guard gives the same checked stream, and the same verdict, however the
layer's bytes are cut into pieces: headers, pax/GNU extended headers and old GNU sparse
extension blocks that straddle two pieces are completed before they are checked. Oversized
extended headers are refused (as Go's archive/tar does), not buffered."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from berth.image import unpack
from berth.image.unpack import BadLayer, TarGuard, UnsafeLayer, apply_layer

PIECES = [1, 7, 100, 511, 512, 513, 1000, 1536, 4096, 65536, 1 << 30]


def _tar(fmt: int, entries: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for ti, data in entries:
            ti.size = len(data) if ti.isfile() else 0
            t.addfile(ti, io.BytesIO(data) if ti.isfile() else None)
    return buf.getvalue()


def _ti(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", pax: dict[str, str] | None = None) -> tarfile.TarInfo:
    t = tarfile.TarInfo(name)
    t.type, t.linkname, t.mtime = kind, link, 1_700_000_000
    if pax:
        t.pax_headers = pax
    return t


def _rich_pax() -> bytes:
    return _tar(tarfile.PAX_FORMAT, [
        (_ti("d", tarfile.DIRTYPE), b""),
        (_ti("d/" + "n" * 180), b"long name " * 30),
        (_ti("d/x", pax={"SCHILY.xattr.user.big": "v" * 3000}), b"with a 3 kB xattr"),
        (_ti("d/empty"), b""),
        (_ti("d/.wh.gone"), b""),
        (_ti("o", tarfile.DIRTYPE), b""),
        (_ti("o/.wh..wh..opq"), b""),
        (_ti("d/hard", tarfile.LNKTYPE, "d/x"), b""),
        (_ti("d/sym", tarfile.SYMTYPE, "/" + "t" * 200), b""),
        (_ti("big"), os.urandom(70_000)),
        (_ti("last"), b"z"),
    ])


def _gnu_longnames() -> bytes:
    return _tar(tarfile.GNU_FORMAT, [(_ti("g" * 300), b"gnu long name"),
                                     (_ti("l" * 10, tarfile.SYMTYPE, "k" * 300), b"")])


def _gnu_sparse(tmp: Path) -> bytes:
    """Old GNU sparse format with extension blocks: more than 4 data runs between holes."""
    src = tmp / "sparse-src"
    src.mkdir()
    with open(src / "holes", "wb") as f:
        for i in range(30):
            f.seek(i * 65536)
            f.write(b"data%d" % i)
    out = tmp / "sparse.tar"
    subprocess.run(["tar", "--format=gnu", "-S", "-C", str(src), "-cf", str(out), "holes"], check=True)
    data = out.read_bytes()
    assert data[156:157] == b"S" and data[482], "expected an old GNU sparse header with extension blocks"
    return data


def _feed(data: bytes, piece: int) -> tuple[bytes, TarGuard]:
    g = TarGuard()
    out = []
    for i in range(0, len(data), piece):
        out.extend(bytes(p) for p in g.feed_parts(data[i:i + piece]))
    return b"".join(out), g


@pytest.mark.parametrize("kind", ["pax", "gnu-longnames", "gnu-sparse"])
def test_same_stream_whatever_the_pieces(tmp_path, kind):
    data = {"pax": _rich_pax, "gnu-longnames": _gnu_longnames}.get(kind, lambda: _gnu_sparse(tmp_path))()
    whole, g0 = _feed(data, len(data))
    assert g0.ended and not g0.buf and not g0.left
    assert whole.startswith(data[:512])  # passes through unchanged where nothing is dropped
    for piece in PIECES:
        out, g = _feed(data, piece)
        assert out == whole, f"piece size {piece}"
        assert (g.ended, g.size, g.members, g.whiteouts, g.opaques) == \
            (g0.ended, g0.size, g0.members, g0.whiteouts, g0.opaques), f"piece size {piece}"


HOSTILE = {
    "dotdot-after-pax": [(_ti("a", pax={"comment": "c" * 900}), b"1"), (_ti("../x"), b"x")],
    "symlink-through": [(_ti("l", tarfile.SYMTYPE, "/tmp"), b""), (_ti("l/x"), b"x")],
    "hardlink-out": [(_ti("f"), b"1"), (_ti("h", tarfile.LNKTYPE, "../../etc/passwd"), b"")],
    "long-name-escape": [(_ti("f"), b"1"), (_ti("a/" + "b/" * 60 + "../" * 62 + "x"), b"x")],
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
@pytest.mark.parametrize("piece", [1, 511, 513, 4096])
def test_hostile_refused_whatever_the_pieces(case, piece):
    data = _tar(tarfile.PAX_FORMAT, HOSTILE[case])
    g = TarGuard()
    passed = []
    with pytest.raises(UnsafeLayer):
        for i in range(0, len(data), piece):
            passed.extend(bytes(p) for p in g.feed_parts(data[i:i + piece]))
    # Nothing of the refused member went out: what passed is a prefix of the safe members.
    assert b"".join(passed) in data


def test_oversized_extended_header_refused(tmp_path):
    data = _tar(tarfile.PAX_FORMAT, [(_ti("f", pax={"SCHILY.xattr.user.k": "v" * (unpack.MAX_EXT_HEADER + 1)}), b"")])
    with pytest.raises(BadLayer, match="too large"):
        _feed(data, 65536)
    (tmp_path / "l").mkdir()
    with pytest.raises(BadLayer, match="too large"):
        apply_layer(io.BytesIO(gzip.compress(data)), tmp_path / "l")


class _Trickle(io.RawIOBase):
    """A source that returns at most ``n`` bytes a read (as a slow socket would)."""

    def __init__(self, data: bytes, n: int):
        self.src = io.BytesIO(data)
        self.n = n

    def read(self, size: int = -1) -> bytes:
        return self.src.read(self.n)


@pytest.mark.root
@pytest.mark.parametrize("piece", [1000, 4097])
def test_layer_unpacked_the_same_from_small_reads(tmp_path, piece):
    data = _rich_pax()
    comp = gzip.compress(data)
    trees = []
    for name, src in (("whole", io.BytesIO(comp)), ("trickle", _Trickle(comp, piece))):
        dest = tmp_path / name
        dest.mkdir()
        diff, size = apply_layer(src, dest)  # type: ignore[arg-type]
        assert diff == "sha256:" + hashlib.sha256(data).hexdigest()
        tree = []
        for root, dirs, files in os.walk(dest):
            for n in sorted(dirs + files):
                p = Path(root, n)
                st = os.lstat(p)
                body = p.read_bytes() if p.is_file() and not p.is_symlink() else os.readlink(p) if p.is_symlink() else ""
                tree.append((str(p.relative_to(dest)), st.st_mode, st.st_size, body))
        trees.append((sorted(tree), size))
    assert trees[0] == trees[1]
    assert (tmp_path / "trickle" / "big").stat().st_size == 70_000


@pytest.mark.parametrize("fill", [b"\x00", b"\xff", b"\x7f", None])
def test_header_checksum_matches_a_plain_sum(fill):
    for _ in range(200 if fill is None else 1):
        hdr = os.urandom(512) if fill is None else fill * 512
        assert unpack._header_sum(hdr) == sum(hdr[:148]) + 256 + sum(hdr[156:])
