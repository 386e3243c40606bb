"""The content store: blobs named by their sha256 digest, verified before they become visible.

::

    <data-root>/image/blobs/sha256/<hex>   read-only, complete, verified
    <data-root>/image/ingest/<random>      being written; swept at start

A blob is written to ``ingest/``, its size and digest are checked, then it is renamed into
``blobs/`` and made read-only (containerd's way). Readers never see a partial blob.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import BinaryIO

from berth.errors import InvalidArgument, NotFound

_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")


class DigestMismatch(InvalidArgument):
    pass


class NoSuchBlob(NotFound):
    pass


def check_digest(d: str) -> str:
    if not _DIGEST.match(d):
        raise InvalidArgument(f"unsupported digest {d!r}")
    return d


class Ingest:
    """One blob being written: ``write()`` pieces, then ``commit()`` (verifies) or ``abort()``."""

    def __init__(self, store: ContentStore, expected: str | None = None, size: int | None = None):
        self.store = store
        self.expected = expected
        self.expected_size = size
        self.path = store.ingest_dir / secrets.token_hex(12)
        self.f = open(self.path, "wb")
        self.h = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        if self.expected_size is not None and self.size + len(data) > self.expected_size:
            raise DigestMismatch(f"blob {self.expected}: more data than the {self.expected_size} bytes announced")
        self.h.update(data)
        self.f.write(data)
        self.size += len(data)

    @property
    def digest(self) -> str:
        return "sha256:" + self.h.hexdigest()

    def commit(self) -> str:
        """Verify and publish; returns the digest."""
        try:
            self.f.close()
            d = self.digest
            if self.expected_size is not None and self.size != self.expected_size:
                raise DigestMismatch(f"blob {self.expected}: got {self.size} bytes, expected {self.expected_size}")
            if self.expected is not None and d != self.expected:
                raise DigestMismatch(f"digest mismatch: expected {self.expected}, got {d}")
            final = self.store.path(d)
            os.chmod(self.path, 0o444)
            os.rename(self.path, final)
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
    def __init__(self, root: Path):
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.ingest_dir = root / "ingest"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.ingest_dir.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.blobs / check_digest(digest).removeprefix("sha256:")

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
        w = self.ingest(expected, None)
        w.write(data)
        return w.commit()

    def put_file(self, src: BinaryIO, expected: str | None = None) -> str:
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

    def delete(self, digest: str) -> None:
        try:
            os.unlink(self.path(digest))
        except FileNotFoundError:
            pass

    def sweep(self) -> None:
        shutil.rmtree(self.ingest_dir, ignore_errors=True)
        self.ingest_dir.mkdir(parents=True, exist_ok=True)

    def all(self) -> list[str]:
        return ["sha256:" + p.name for p in self.blobs.iterdir()]
