"""Blob upload sessions: a staging file per upload, appended in order, verified, then moved
into the blob store.

Lifecycle (the handler streams the bodies; nothing here holds more than one chunk)::

    up = uploads.create("library/busybox")      # POST  -> 202, Location .../uploads/<uuid>
    up = uploads.get("library/busybox", uuid)   # PATCH -> append chunks at up.offset
    w = up.open_writer(); w.write(chunk); ...; w.close()
    uploads.finish(up, "sha256:...")            # PUT ?digest= -> verified, committed, linked
    uploads.cancel(up)                          # DELETE, a wrong digest, or the stale sweep

State lives on disk (``uploads/<uuid>/info`` and ``data``), so an upload survives a client
disconnect and a server restart: its offset is the size of ``data``. A running hash is kept in
memory while the session's offset matches the file; otherwise the file is hashed again at
``finish``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import time
import uuid as uuidlib
from pathlib import Path

from berth.registry.server.errors import BlobUploadUnknown, DigestInvalid, SizeInvalid
from berth.registry.server.names import parse_digest
from berth.registry.server.storage import Storage

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class Upload:
    """One upload session. ``offset`` is how many bytes it holds; ``started`` is epoch seconds."""

    def __init__(self, uuid: str, repo: str, directory: Path, started: float) -> None:
        self.uuid = uuid
        self.repo = repo
        self.dir = directory
        self.data = directory / "data"
        self.started = started
        self.offset = self.data.stat().st_size
        self._hash = hashlib.sha256() if self.offset == 0 else None
        self._hashed = 0
        self.lock = asyncio.Lock()  # one request appends at a time; others wait their turn

    def open_writer(self) -> "_Writer":
        return _Writer(self)

    def digest_of(self, alg: str) -> str:
        """The digest of the data so far, in algorithm alg."""
        if alg == "sha256" and self._hash is not None and self._hashed == self.offset:
            return self._hash.hexdigest()
        h = hashlib.new(alg)
        with open(self.data, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
        return h.hexdigest()


class _Writer:
    """An upload kept open for a stream of chunks (one request); ``close`` when done."""

    def __init__(self, upload: Upload) -> None:
        self.up = upload
        self.fd = os.open(upload.data, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)

    def write(self, chunk: bytes) -> None:
        up = self.up
        view = memoryview(chunk)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
        if up._hash is not None and up._hashed == up.offset:
            up._hash.update(chunk)
            up._hashed += len(chunk)
        up.offset += len(chunk)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Uploads:
    """The upload sessions of one storage root."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._live: dict[str, Upload] = {}

    def create(self, repo: str) -> Upload:
        uid = str(uuidlib.uuid4())
        directory = self.storage.uploads / uid
        directory.mkdir(parents=True)
        (directory / "data").touch()
        started = time.time()
        (directory / "info").write_text(json.dumps({"repo": repo, "started": started}))
        up = Upload(uid, repo, directory, started)
        self._live[uid] = up
        return up

    def get(self, repo: str, uid: str) -> Upload:
        """The session uid of repo.

        Raises:
            BlobUploadUnknown: no such session (never started, finished, cancelled, swept, or
                started for another repository).
        """
        up = self._live.get(uid)
        if up is None:
            up = self._load(uid)
        elif not up.data.exists():  # finished or swept by another process sharing the root
            self._live.pop(uid, None)
            up = None
        if up is None or up.repo != repo:
            raise BlobUploadUnknown(detail={"uuid": uid[:64]})
        if up.offset != up.data.stat().st_size:  # appended by another process sharing the root
            up.offset = up.data.stat().st_size
        return up

    def _load(self, uid: str) -> Upload | None:
        if not UUID_RE.fullmatch(uid):
            return None
        directory = self.storage.uploads / uid
        try:
            info = json.loads((directory / "info").read_text())
            up = Upload(uid, info["repo"], directory, float(info["started"]))
        except (OSError, ValueError, KeyError):
            return None
        self._live[uid] = up
        return up

    def finish(self, up: Upload, digest: str, size: int | None = None,
               actual: str | None = None) -> None:
        """Verify the data against digest (and size when given), move it into the blob store
        and link it into the upload's repository. A mismatch cancels the upload. ``actual`` is the
        hex digest when the caller has computed it already.

        Raises:
            DigestInvalid: the content does not have this digest.
            SizeInvalid: the content does not have this size.
        """
        alg, hexpart = parse_digest(digest)
        if size is not None and size != up.offset:
            self.cancel(up)
            raise SizeInvalid(f"blob size {up.offset} does not match {size}")
        if (actual if actual is not None else up.digest_of(alg)) != hexpart:
            self.cancel(up)
            raise DigestInvalid(detail={"digest": digest})
        self.storage.commit_blob(up.data, digest)
        self.storage.link_blob(up.repo, digest)
        self.cancel(up)

    def cancel(self, up: Upload) -> None:
        self._live.pop(up.uuid, None)
        shutil.rmtree(up.dir, ignore_errors=True)

    def sweep(self, max_age: float, now: float | None = None) -> list[str]:
        """Remove sessions started more than max_age seconds ago; return their ids."""
        now = time.time() if now is None else now
        removed = []
        for uid in sorted(os.listdir(self.storage.uploads)):
            directory = self.storage.uploads / uid
            try:
                started = float(json.loads((directory / "info").read_text())["started"])
            except (OSError, ValueError, KeyError):
                # half-created by a crash: judge it by the directory's own age
                try:
                    started = directory.stat().st_mtime
                except FileNotFoundError:
                    continue
            if now - started > max_age:
                up = self._live.pop(uid, None)
                if up is not None and up.lock.locked():
                    continue
                shutil.rmtree(directory, ignore_errors=True)
                removed.append(uid)
        return removed
