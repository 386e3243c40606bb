"""One content store, two layouts: the engine's and the registry server's run the same suite."""

from __future__ import annotations

import hashlib
import io
import os
import stat
from pathlib import Path

import pytest

from berth.errors import InvalidArgument
from berth.image.content import ContentStore, DigestMismatch, NoSuchBlob
from berth.registry.server.storage import Storage


def _engine(root: Path) -> ContentStore:
    return ContentStore(root)


def _registry(root: Path) -> ContentStore:
    return Storage(root).content


LAYOUTS = {"engine": _engine, "registry": _registry}


@pytest.fixture(params=sorted(LAYOUTS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ContentStore:
    return LAYOUTS[request.param](tmp_path / "root")


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_put_read_is_read_only(store: ContentStore) -> None:
    d = store.put(b"hello", expected=sha(b"hello"))
    assert d == sha(b"hello") and store.read(d) == b"hello" and store.size(d) == 5
    assert stat.S_IMODE(store.path(d).stat().st_mode) == 0o444
    assert store.all() == [d]


def test_put_rejects_wrong_digest(store: ContentStore) -> None:
    with pytest.raises(DigestMismatch):
        store.put(b"hello", expected=sha(b"other"))
    assert store.all() == []


def test_missing_and_malformed(store: ContentStore) -> None:
    with pytest.raises(NoSuchBlob):
        store.size(sha(b"x"))
    with pytest.raises(InvalidArgument):
        store.path("sha256:zz")
    assert not store.exists("md5:abc")


def test_commit_file_publishes_and_dedups(store: ContentStore, tmp_path: Path) -> None:
    src = tmp_path / "upload"
    src.write_bytes(b"layer")
    store.commit_file(src, sha(b"layer"))
    assert not src.exists() and store.read(sha(b"layer")) == b"layer"
    again = tmp_path / "again"
    again.write_bytes(b"layer")
    store.commit_file(again, sha(b"layer"))
    assert not again.exists() and store.all() == [sha(b"layer")]


def test_sha512_only_where_configured(tmp_path: Path) -> None:
    data = b"x" * 10
    d512 = "sha512:" + hashlib.sha512(data).hexdigest()
    assert _registry(tmp_path / "r").put(data, expected=d512) == d512
    with pytest.raises(InvalidArgument):
        _engine(tmp_path / "e").put(data, expected=d512)


def test_delete_and_sweep_temporaries(store: ContentStore) -> None:
    d = store.put(b"a")
    stray = store.path(d).parent / ".left-by-a-crash.1.0.tmp"
    stray.write_bytes(b"half")
    assert store.all() == [d]
    store.sweep()
    assert not stray.exists()
    store.delete(d)
    store.delete(d)
    assert store.all() == [] and not store.exists(d)


def test_streamed_ingest(tmp_path: Path) -> None:
    store = _engine(tmp_path)
    d = store.put_file(io.BytesIO(b"stream" * 1000), expected=sha(b"stream" * 1000))
    assert store.read(d) == b"stream" * 1000
    ing = store.ingest(sha(b"abc"), 3)
    ing.write(b"abd")
    with pytest.raises(DigestMismatch):
        ing.commit()
    assert store.ingest_dir is not None and os.listdir(store.ingest_dir) == []
    with pytest.raises(InvalidArgument):
        _registry(tmp_path / "r").ingest()


def test_layouts_differ_only_in_fanout(tmp_path: Path) -> None:
    e, r = _engine(tmp_path / "e"), _registry(tmp_path / "r")
    d = sha(b"x")
    hexpart = d.split(":")[1]
    assert e.path(d) == tmp_path / "e" / "blobs" / "sha256" / hexpart
    assert r.path(d) == tmp_path / "r" / "blobs" / "sha256" / hexpart[:2] / hexpart
