"""The content store: blobs named by their digest, verified before they become visible.

One implementation for the engine (``<data-root>/image``) and for ``berth registry serve``
(its own root); they differ only in layout options::

    engine                                   registry server (fanout=True)
    ROOT/blobs/sha256/<hex>                  ROOT/blobs/<alg>/<hh>/<hex>
    ROOT/ingest/<random>  (swept at start)   (uploads are the registry's own sessions)

Every blob is read-only and complete. A stream is written to ``ingest/``, its size and digest
are checked, then it is renamed into ``blobs/`` (containerd's way); bytes already in memory are
verified and written by ``state.write_atomic``; a file verified elsewhere (a registry upload)
is published by ``commit_file``. Readers never see a partial blob.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, BinaryIO

from berth.errors import InvalidArgument, NotFound
from berth.state.atomic import fsync_dir, write_atomic

SHA256_ONLY: Mapping[str, int] = {"sha256": 64}   # algorithm -> hex length
_HEX = re.compile(r"[a-f0-9]+")


class DigestMismatch(InvalidArgument):
    pass


class NoSuchBlob(NotFound):
    pass


def check_digest(d: str, algorithms: Mapping[str, int] = SHA256_ONLY) -> str:
    alg, _, hexpart = d.partition(":")
    if algorithms.get(alg) != len(hexpart) or not _HEX.fullmatch(hexpart):
        raise InvalidArgument(f"unsupported digest {d!r}")
    return d


class Ingest:
    """One blob being written: ``write()`` pieces, then ``commit()`` (verifies) or ``abort()``."""

    def __init__(self, store: ContentStore, expected: str | None = None, size: int | None = None):
        if store.ingest_dir is None:
            raise InvalidArgument("this content store takes no streamed ingests")
        self.store = store
        self.expected = expected
        self.expected_size = size
        self.path = store.ingest_dir / secrets.token_hex(12)
        self.f = open(self.path, "wb")
        self.alg = store.algorithm_of(expected)
        self.h = hashlib.new(self.alg)
        self.size = 0

    def write(self, data: bytes) -> None:
        if self.expected_size is not None and self.size + len(data) > self.expected_size:
            raise DigestMismatch(f"blob {self.expected}: more data than the {self.expected_size} bytes announced")
        self.h.update(data)
        self.f.write(data)
        self.size += len(data)

    @property
    def digest(self) -> str:
        return f"{self.alg}:{self.h.hexdigest()}"

    def commit(self) -> str:
        """Verify and publish; returns the digest."""
        try:
            self.f.close()
            d = self.digest
            if self.expected_size is not None and self.size != self.expected_size:
                raise DigestMismatch(f"blob {self.expected}: got {self.size} bytes, expected {self.expected_size}")
            if self.expected is not None and d != self.expected:
                raise DigestMismatch(f"digest mismatch: expected {self.expected}, got {d}")
            self.store.commit_file(self.path, d)
            return d
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        try:
            self.f.close()
        except OSError:
            pass
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class ContentStore:
    """Blobs under ``root/blobs``.

    ``fanout`` adds a two-hex-digit directory level (the registry's layout, which keeps
    directories small); ``algorithms`` are the digests accepted; ``fsync`` makes each publish
    durable across a power cut; ``ingest=False`` means no streamed ingests (the caller
    verifies files itself and publishes them with ``commit_file``).
    """

    def __init__(self, root: Path, *, fanout: bool = False,
                 algorithms: Mapping[str, int] = SHA256_ONLY, fsync: bool = False,
                 ingest: bool = True) -> None:
        self.root = root
        self.fanout = fanout
        self.algorithms = algorithms
        self.fsync = fsync
        self.blobs = root / "blobs"
        self.ingest_dir = root / "ingest" if ingest else None
        self.blobs.mkdir(parents=True, exist_ok=True)
        if self.ingest_dir is not None:
            self.ingest_dir.mkdir(parents=True, exist_ok=True)

    def algorithm_of(self, expected: str | None) -> str:
        """The algorithm to hash with: expected's when the store accepts it, else sha256
        (the result then mismatches expected, as it should)."""
        alg = expected.partition(":")[0] if expected else "sha256"
        return alg if alg in self.algorithms else "sha256"

    def path(self, digest: str) -> Path:
        alg, _, hexpart = check_digest(digest, self.algorithms).partition(":")
        if self.fanout:
            return self.blobs / alg / hexpart[:2] / hexpart
        return self.blobs / alg / hexpart

    def exists(self, digest: str) -> bool:
        try:
            return self.path(digest).exists()
        except InvalidArgument:
            return False

    def size(self, digest: str) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise NoSuchBlob(f"blob {digest} not found") from None

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise NoSuchBlob(f"blob {digest} not found") from None

    def read(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def ingest(self, expected: str | None = None, size: int | None = None) -> Ingest:
        return Ingest(self, expected, size)

    def put(self, data: bytes, expected: str | None = None) -> str:
        """Store bytes held in memory; returns their digest (checked against ``expected``)."""
        alg = self.algorithm_of(expected)
        d = f"{alg}:{hashlib.new(alg, data).hexdigest()}"
        if expected is not None and d != expected:
            raise DigestMismatch(f"digest mismatch: expected {expected}, got {d}")
        dest = self.path(d)
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(dest, data, mode=0o444, sync=self.fsync)
        return d

    def put_file(self, src: IO[bytes], expected: str | None = None) -> str:
        w = self.ingest(expected)
        try:
            while True:
                b = src.read(1 << 20)
                if not b:
                    break
                w.write(b)
        except BaseException:
            w.abort()
            raise
        return w.commit()

    def commit_file(self, src: Path, digest: str) -> None:
        """Publish a file whose content the caller has verified to have ``digest``: made
        read-only and renamed into place. If the blob is there already, src is removed."""
        dest = self.path(digest)
        if dest.exists():
            src.unlink(missing_ok=True)
            return
        os.chmod(src, 0o444)
        if self.fsync:
            _fsync_file(src)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dest)
        if self.fsync:
            fsync_dir(dest.parent)

    def delete(self, digest: str) -> None:
        try:
            os.unlink(self.path(digest))
        except FileNotFoundError:
            pass

    def sweep(self) -> None:
        """Remove what a crash left half-written: the ingest area and stray temporaries."""
        if self.ingest_dir is not None:
            shutil.rmtree(self.ingest_dir, ignore_errors=True)
            self.ingest_dir.mkdir(parents=True, exist_ok=True)
        for dirpath, _, files in os.walk(self.blobs):
            for name in files:
                if name.startswith(".") and name.endswith(".tmp"):
                    Path(dirpath, name).unlink(missing_ok=True)

    def all(self) -> list[str]:
        return list(self._walk())

    def _walk(self) -> Iterator[str]:
        for alg in _listdir(self.blobs):
            if alg not in self.algorithms:
                continue
            base = self.blobs / alg
            dirs = [base / hh for hh in _listdir(base)] if self.fanout else [base]
            for d in dirs:
                for name in _listdir(d):
                    if not name.startswith("."):
                        yield f"{alg}:{name}"


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []
