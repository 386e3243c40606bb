"""The registry's storage root: blobs stored once, repositories linking to them, tags as pointers.

::

    ROOT/
      blobs/<alg>/<hh>/<hex>                content, read-only; a manifest is a blob too
      repositories/<name>/                  <name> may hold "/"; its components never start
        _layers/<alg>/<hex>                 with "_", so these cannot collide with a name
                                            empty: the blob is linked into the repository
        _manifests/revisions/<alg>/<hex>    the manifest's media type: it is in the repository
        _manifests/tags/<tag>               the digest the tag points to
        _referrers/<alg>/<subject-hex>/<alg>-<hex>
                                            the referrer's descriptor (JSON), see referrers()
      uploads/<uuid>/info, data             upload sessions in progress (see uploads.py)
      writers.lock                          shared flock held by every server that may write;
                                            gc takes it exclusively (see gc.py)

Blobs live in the content store shared with the engine (``berth.image.content``, with the
registry's fan-out layout); this module adds repositories, links and tags around it.

Every write goes to a temporary name in the target's directory and is renamed into place, in
an order that never shows a half-made object: a blob is complete before it is linked, a
manifest's blob before its revision link, the revision before its tag. What a crash leaves is
unreferenced (a blob, a link) and gc removes it; a referrer entry whose revision is missing is
skipped when listed.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from berth.image.content import ContentStore, NoSuchBlob
from berth.registry.server.errors import BlobUnknown, ManifestUnknown, NameUnknown
from berth.registry.server.names import ALGORITHMS, parse_digest
from berth.state.atomic import write_atomic


class Storage:
    """One storage root. Methods are synchronous, small and local (no network); blob bodies
    are streamed by the caller from ``blob_path``."""

    def __init__(self, root: Path, fsync: bool = False) -> None:
        self.root = root
        self.fsync = fsync
        self.content = ContentStore(root, fanout=True, algorithms=ALGORITHMS, fsync=fsync,
                                    ingest=False)
        self.blobs = self.content.blobs
        self.repos = root / "repositories"
        self.uploads = root / "uploads"
        for path in (self.blobs, self.repos, self.uploads):
            path.mkdir(parents=True, exist_ok=True)
        self.writers_lock = root / "writers.lock"

    # -- paths -------------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        parse_digest(digest)
        return self.content.path(digest)

    def repo_dir(self, repo: str) -> Path:
        return self.repos / repo

    def _layer_link(self, repo: str, digest: str) -> Path:
        alg, hexpart = parse_digest(digest)
        return self.repos / repo / "_layers" / alg / hexpart

    def _revision(self, repo: str, digest: str) -> Path:
        alg, hexpart = parse_digest(digest)
        return self.repos / repo / "_manifests" / "revisions" / alg / hexpart

    def _tags_dir(self, repo: str) -> Path:
        return self.repos / repo / "_manifests" / "tags"

    def _referrers_dir(self, repo: str, subject: str) -> Path:
        alg, hexpart = parse_digest(subject)
        return self.repos / repo / "_referrers" / alg / hexpart

    def _write(self, path: Path, data: bytes, mode: int = 0o644) -> None:
        try:
            write_atomic(path, data, mode=mode, sync=self.fsync)
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, data, mode=mode, sync=self.fsync)

    # -- blobs -------------------------------------------------------------------------------

    def blob_size(self, digest: str) -> int | None:
        """Size of the stored blob, or None when the registry does not hold it."""
        parse_digest(digest)
        try:
            return self.content.size(digest)
        except NoSuchBlob:
            return None

    def commit_blob(self, src: Path, digest: str) -> None:
        """Move a verified file into the blob store (read-only). If the blob is already there
        (same digest, same bytes) the source is removed instead."""
        parse_digest(digest)
        self.content.commit_file(src, digest)

    def put_blob_bytes(self, digest: str, data: bytes) -> None:
        """Store small content (a manifest) whose digest the caller has computed."""
        parse_digest(digest)
        self.content.put(data, expected=digest)

    def read_blob(self, digest: str) -> bytes:
        parse_digest(digest)
        try:
            return self.content.read(digest)
        except NoSuchBlob:
            raise BlobUnknown(detail={"digest": digest}) from None

    def linked(self, repo: str, digest: str) -> bool:
        return self._layer_link(repo, digest).exists()

    def stat_blob(self, repo: str, digest: str) -> int:
        """Size of a blob linked into repo.

        Raises:
            BlobUnknown: not linked, or linked but gone from the store.
        """
        if self.linked(repo, digest):
            size = self.blob_size(digest)
            if size is not None:
                return size
        raise BlobUnknown(detail={"digest": digest})

    def link_blob(self, repo: str, digest: str) -> None:
        link = self._layer_link(repo, digest)
        if not link.exists():
            self._write(link, b"")

    def unlink_blob(self, repo: str, digest: str) -> None:
        try:
            self._layer_link(repo, digest).unlink()
        except FileNotFoundError:
            raise BlobUnknown(detail={"digest": digest}) from None

    # -- manifests and tags ------------------------------------------------------------------

    def put_manifest(self, repo: str, digest: str, data: bytes, media_type: str,
                     tag: str | None = None, subject: str | None = None,
                     referrer: bytes = b"") -> None:
        """Store a checked manifest: its blob, the referrer entry, the revision, the tag."""
        self.put_blob_bytes(digest, data)
        if subject:
            alg, hexpart = parse_digest(digest)
            self._write(self._referrers_dir(repo, subject) / f"{alg}-{hexpart}", referrer)
        revision = self._revision(repo, digest)
        if not revision.exists() or revision.read_bytes() != media_type.encode():
            self._write(revision, media_type.encode())
        if tag is not None:
            self._write(self._tags_dir(repo) / tag, digest.encode())

    def manifest_media_type(self, repo: str, digest: str) -> str | None:
        """The media type of a manifest in repo, or None when repo does not hold it."""
        try:
            return self._revision(repo, digest).read_text()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def resolve_tag(self, repo: str, tag: str) -> str:
        try:
            return (self._tags_dir(repo) / tag).read_text()
        except (FileNotFoundError, NotADirectoryError):
            raise ManifestUnknown(f"manifest unknown: {tag}", detail={"tag": tag}) from None

    def get_manifest(self, repo: str, digest: str) -> tuple[str, bytes]:
        """(media type, bytes) of a manifest in repo.

        Raises:
            ManifestUnknown: repo does not hold it.
        """
        media_type = self.manifest_media_type(repo, digest)
        if media_type is None:
            raise ManifestUnknown(f"manifest unknown: {digest}", detail={"digest": digest})
        try:
            return media_type, self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise ManifestUnknown(f"manifest unknown: {digest}",
                                  detail={"digest": digest}) from None

    def delete_manifest(self, repo: str, digest: str) -> None:
        """Remove a manifest from repo with every tag that points to it, and its entry in the
        referrers of its subject. The blob stays until gc."""
        revision = self._revision(repo, digest)
        if not revision.exists():
            raise ManifestUnknown(f"manifest unknown: {digest}", detail={"digest": digest})
        for tag in self.tags(repo):
            try:
                if (self._tags_dir(repo) / tag).read_text() == digest:
                    (self._tags_dir(repo) / tag).unlink(missing_ok=True)
            except FileNotFoundError:
                pass
        revision.unlink(missing_ok=True)
        alg, hexpart = parse_digest(digest)
        refs = self.repos / repo / "_referrers"
        for entry in refs.glob(f"*/*/{alg}-{hexpart}"):
            entry.unlink(missing_ok=True)

    def delete_tag(self, repo: str, tag: str) -> None:
        try:
            (self._tags_dir(repo) / tag).unlink()
        except (FileNotFoundError, NotADirectoryError):
            raise ManifestUnknown(f"manifest unknown: {tag}", detail={"tag": tag}) from None

    def has_repo(self, repo: str) -> bool:
        return (self.repos / repo / "_manifests").is_dir()

    def tags(self, repo: str) -> list[str]:
        """Sorted tags of repo.

        Raises:
            NameUnknown: no such repository.
        """
        try:
            return sorted(os.listdir(self._tags_dir(repo)))
        except (FileNotFoundError, NotADirectoryError):
            if self.has_repo(repo):
                return []
            raise NameUnknown(f"repository name not known to registry: {repo}",
                              detail={"name": repo}) from None

    def tag_map(self, repo: str) -> dict[str, str]:
        out = {}
        for tag in self.tags(repo):
            try:
                out[tag] = (self._tags_dir(repo) / tag).read_text()
            except FileNotFoundError:
                pass
        return out

    def revisions(self, repo: str) -> list[str]:
        base = self.repos / repo / "_manifests" / "revisions"
        return sorted(f"{alg}:{h}" for alg in _listdir(base) for h in _listdir(base / alg))

    def layer_links(self, repo: str) -> list[str]:
        base = self.repos / repo / "_layers"
        return sorted(f"{alg}:{h}" for alg in _listdir(base) for h in _listdir(base / alg))

    def repositories(self) -> list[str]:
        """Every repository name that holds a manifest area, sorted."""
        found: list[str] = []

        def walk(path: Path, prefix: str) -> None:
            for entry in _listdir(path):
                if entry.startswith("_"):
                    if entry == "_manifests":
                        found.append(prefix)
                    continue
                walk(path / entry, f"{prefix}/{entry}" if prefix else entry)

        walk(self.repos, "")
        return sorted(found)

    def referrers(self, repo: str, subject: str) -> list[bytes]:
        """Descriptors (JSON) of the manifests in repo whose subject is ``subject``."""
        base = self._referrers_dir(repo, subject)
        out = []
        for name in _listdir(base):
            alg, _, hexpart = name.partition("-")
            if not self.manifest_media_type(repo, f"{alg}:{hexpart}"):
                continue  # left by a crash before the revision was written, or deleted
            try:
                out.append((base / name).read_bytes())
            except FileNotFoundError:
                pass
        return out

    def referrer_entries(self, repo: str) -> list[tuple[str, str, Path]]:
        """(subject, referrer, entry path) for every referrer entry in repo (for gc)."""
        base = self.repos / repo / "_referrers"
        out = []
        for alg in _listdir(base):
            for subject_hex in _listdir(base / alg):
                for name in _listdir(base / alg / subject_hex):
                    ralg, _, rhex = name.partition("-")
                    out.append((f"{alg}:{subject_hex}", f"{ralg}:{rhex}",
                                base / alg / subject_hex / name))
        return out

    def blob_digests(self) -> list[str]:
        """Every blob in the store (for gc)."""
        return self.content.all()


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return []
        raise
