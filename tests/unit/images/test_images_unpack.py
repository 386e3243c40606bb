"""The layer unpacker against crafted tars: hostile ones are refused before any byte of the
bad member is written; whiteouts, hard links, devices, xattrs, sparse files, zstd, gzip.
Run with GNU tar and with the pure-Python fallback."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from berth.image import unpack
from berth.image.unpack import BadLayer, UnsafeLayer, apply_layer

pytestmark = pytest.mark.root


@pytest.fixture(params=["gnutar", "python"])
def engine(request, monkeypatch):
    monkeypatch.setattr(unpack, "_TAR", [None] if request.param == "python" else [])
    return request.param


def tar(*entries: tarfile.TarInfo | tuple[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for e in entries:
            if isinstance(e, tuple):
                ti = tarfile.TarInfo(e[0])
                ti.size = len(e[1])
                t.addfile(ti, io.BytesIO(e[1]))
            else:
                t.addfile(e)
    return buf.getvalue()


def ti(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", **kw: object) -> tarfile.TarInfo:
    t = tarfile.TarInfo(name)
    t.type = kind
    t.linkname = link
    for k, v in kw.items():
        setattr(t, k, v)
    return t


def apply(data: bytes, dest: Path) -> tuple[str, int]:
    dest.mkdir(exist_ok=True)
    return apply_layer(io.BytesIO(data), dest)


# A name no other process uses, so a stray /tmp entry cannot fail (or hide) an escape.
X = f"berth-hostile-{os.getpid()}"

HOSTILE = {
    "dotdot": [(f"../{X}", b"x")],
    "dotdot-deep": [(f"a/../../{X}", b"x")],
    "absolute": [(f"/{X}", b"x")],
    "symlink-through": [ti("l", tarfile.SYMTYPE, "/tmp"), (f"l/{X}", b"x")],
    "symlink-through-rel": [ti("d", tarfile.DIRTYPE), ti("d/l", tarfile.SYMTYPE, "../.."), (f"d/l/{X}", b"x")],
    "hardlink-out": [ti("h", tarfile.LNKTYPE, "../../etc/passwd")],
    "hardlink-abs": [ti("h", tarfile.LNKTYPE, "/etc/passwd")],
    "hardlink-unknown": [ti("h", tarfile.LNKTYPE, "etc/passwd")],
    "hardlink-through-symlink": [ti("l", tarfile.SYMTYPE, "/etc"), ti("h", tarfile.LNKTYPE, "l/passwd")],
    "hardlink-dir": [ti("d", tarfile.DIRTYPE), ti("h", tarfile.LNKTYPE, "d")],
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_refused_nothing_outside(tmp_path, engine, case):
    dest = tmp_path / "layer"
    with pytest.raises(UnsafeLayer):
        apply(tar(("first", b"1"), *HOSTILE[case]), dest)
    assert not (tmp_path / X).exists() and not (Path("/tmp") / X).exists() and not (Path("/") / X).exists()
    assert sorted(os.listdir(tmp_path)) == ["layer"]


def test_overlay_xattr_refused(tmp_path, engine):
    t = ti("f", size=0)
    t.pax_headers = {"SCHILY.xattr.trusted.overlay.redirect": "/etc"}
    with pytest.raises(UnsafeLayer):
        apply(tar(t), tmp_path / "l")


def test_garbage_and_truncated(tmp_path, engine):
    with pytest.raises(BadLayer):
        apply(b"\x01" * 1024, tmp_path / "a")
    data = tar(("big", b"x" * 5000))
    with pytest.raises(BadLayer):
        apply(data[:2048], tmp_path / "b")
    with pytest.raises(BadLayer):
        apply(gzip.compress(data)[:40], tmp_path / "c")


def test_whiteouts_opaque_and_features(tmp_path, engine):
    f = ti("dir/x", size=0)
    f.pax_headers = {"SCHILY.xattr.user.k": "v"}
    dev = ti("null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666)
    owned = ti("owned", size=0, uid=1234, gid=5678, mode=0o4750)
    data = tar(ti("dir", tarfile.DIRTYPE, mode=0o755), f, ("dir/file", b"content"),
               ti("dir/hard", tarfile.LNKTYPE, "dir/file"), ti("dir/sym", tarfile.SYMTYPE, "/nowhere/at/all"),
               ("dir/.wh.gone", b""), ti("opq", tarfile.DIRTYPE), ("opq/.wh..wh..opq", b""),
               ("opq/kept", b"k"), (".wh..wh.plnk", b""), dev, owned, ti("fifo", tarfile.FIFOTYPE))
    dest = tmp_path / "l"
    diff, size = apply(gzip.compress(data), dest)
    assert diff == "sha256:" + hashlib.sha256(data).hexdigest()
    assert size == len(b"content") + len(b"k")
    st = os.lstat(dest / "dir" / "gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert not (dest / "dir" / ".wh.gone").exists() and not (dest / ".wh..wh.plnk").exists()
    assert os.getxattr(dest / "opq", "trusted.overlay.opaque") == b"y"
    assert not (dest / "opq" / ".wh..wh..opq").exists() and (dest / "opq" / "kept").read_bytes() == b"k"
    assert os.stat(dest / "dir" / "file").st_ino == os.stat(dest / "dir" / "hard").st_ino
    assert os.readlink(dest / "dir" / "sym") == "/nowhere/at/all"
    assert os.getxattr(dest / "dir" / "x", "user.k") == b"v"
    st = os.lstat(dest / "null")
    assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3
    st = os.lstat(dest / "owned")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 5678, 0o4750)
    assert stat.S_ISFIFO(os.lstat(dest / "fifo").st_mode)


def test_zstd_and_multi_member_gzip(tmp_path, engine):
    zstandard = pytest.importorskip("zstandard")
    data = tar(("a", b"A" * 100000), ("b", b"B"))
    diff, _ = apply(zstandard.ZstdCompressor().compress(data), tmp_path / "z")
    assert diff == "sha256:" + hashlib.sha256(data).hexdigest()
    assert (tmp_path / "z" / "a").read_bytes() == b"A" * 100000
    half = len(data) // 2
    diff, _ = apply(gzip.compress(data[:half]) + gzip.compress(data[half:]), tmp_path / "g")
    assert diff == "sha256:" + hashlib.sha256(data).hexdigest()


def test_sparse_file(tmp_path, engine):
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "sparse", "wb") as f:
        f.seek(50 << 20)
        f.write(b"end")
    out = tmp_path / "s.tar"
    subprocess.run(["tar", "-S", "--format=posix", "-C", str(src), "-cf", str(out), "sparse"], check=True)
    dest = tmp_path / "l"
    diff, _ = apply(out.read_bytes(), dest)
    st = os.stat(dest / "sparse")
    assert st.st_size == (50 << 20) + 3
    with open(dest / "sparse", "rb") as f:
        f.seek(50 << 20)
        assert f.read() == b"end"
    if engine == "gnutar":
        assert st.st_blocks * 512 < (1 << 20)  # the hole stayed a hole


def test_long_names(tmp_path, engine):
    name = "d" * 120 + "/" + "f" * 150
    dest = tmp_path / "l"
    apply(tar(("x" * 200, b"1"), (name, b"2")), dest)
    assert (dest / ("x" * 200)).read_bytes() == b"1" and (dest / name).read_bytes() == b"2"
