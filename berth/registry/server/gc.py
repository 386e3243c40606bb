"""``berth registry gc``: remove what no manifest references.

Mark: in each repository, start from every manifest (or, with ``delete_untagged``, from the
tagged ones only), follow index entries to their child manifests and referrers to their
subjects' referrers, and mark those manifests with their config and layer blobs. Sweep: delete
unmarked manifests (``delete_untagged`` only), repository links to unmarked blobs, dangling
tags and referrer entries, and every blob in the store that no repository marked.

It holds the root's writers lock exclusively (see locks.py): a server with writes enabled
makes it refuse; a ``--read-only`` server may keep serving meanwhile.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from berth.registry.server import manifests
from berth.registry.server.locks import hold
from berth.registry.server.storage import Storage, _listdir
from berth.registry.server.uploads import Uploads


@dataclass
class Report:
    manifests_deleted: list[tuple[str, str]] = field(default_factory=list)  # (repo, digest)
    blobs_deleted: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    links_deleted: int = 0
    uploads_deleted: int = 0


def _layer_repos(storage: Storage) -> list[str]:
    """Every repository with a manifest area or blob links."""
    found: list[str] = []

    def walk(path: Path, prefix: str) -> None:
        entries = _listdir(path)
        if "_manifests" in entries or "_layers" in entries:
            found.append(prefix)
        for entry in entries:
            if not entry.startswith("_"):
                walk(path / entry, f"{prefix}/{entry}" if prefix else entry)

    walk(storage.repos, "")
    return sorted(r for r in found if r)


def _live_manifests(storage: Storage, repo: str, delete_untagged: bool) -> set[str]:
    revisions = set(storage.revisions(repo))
    tags = storage.tag_map(repo)
    roots = {d for d in tags.values() if d in revisions} if delete_untagged else set(revisions)
    subjects: dict[str, list[str]] = {}
    for subject, referrer, _ in storage.referrer_entries(repo):
        subjects.setdefault(subject, []).append(referrer)
    live: set[str] = set()
    todo = list(roots)
    while todo:
        digest = todo.pop()
        if digest in live or digest not in revisions:
            continue
        live.add(digest)
        media_type, data = storage.get_manifest(repo, digest)
        _, children, _ = manifests.references(data, media_type)
        todo.extend(children)
        todo.extend(subjects.get(digest, []))
    return live


def collect(storage: Storage, dry_run: bool = False, delete_untagged: bool = False,
            upload_max_age: float = 7 * 24 * 3600.0) -> Report:
    """Run one collection; with dry_run, only report what would go.

    Raises:
        berth.errors.Conflict: a server that may write holds the root.
    """
    fd = hold(storage.writers_lock, exclusive=True)
    try:
        return _collect(storage, dry_run, delete_untagged, upload_max_age)
    finally:
        os.close(fd)


def _collect(storage: Storage, dry_run: bool, delete_untagged: bool,
             upload_max_age: float) -> Report:
    report = Report()
    marked: set[str] = set()
    for repo in _layer_repos(storage):
        live = _live_manifests(storage, repo, delete_untagged)
        repo_blobs: set[str] = set()
        for digest in live:
            media_type, data = storage.get_manifest(repo, digest)
            blobs, _, _ = manifests.references(data, media_type)
            repo_blobs.update(blobs)
            repo_blobs.add(digest)
        marked |= repo_blobs
        for digest in storage.revisions(repo):
            if digest not in live:
                report.manifests_deleted.append((repo, digest))
                if not dry_run:
                    storage.delete_manifest(repo, digest)
        if dry_run:
            continue
        for tag, digest in storage.tag_map(repo).items():
            if storage.manifest_media_type(repo, digest) is None:
                storage.delete_tag(repo, tag)
        for _, referrer, entry in storage.referrer_entries(repo):
            if referrer not in live:
                entry.unlink(missing_ok=True)
        for digest in storage.layer_links(repo):
            if digest not in repo_blobs:
                storage.unlink_blob(repo, digest)
                report.links_deleted += 1
    for digest in storage.blob_digests():
        if digest in marked:
            continue
        path = storage.blob_path(digest)
        report.blobs_deleted.append(digest)
        try:
            report.bytes_freed += path.stat().st_size
            if not dry_run:
                path.unlink()
        except FileNotFoundError:
            pass
    if not dry_run:
        _sweep_temporaries(storage)
        report.uploads_deleted = _sweep_uploads(storage, upload_max_age)
    return report


def _sweep_temporaries(storage: Storage) -> None:
    """Temporary files a crash left behind a rename that never happened."""
    for base in (storage.blobs, storage.repos):
        for dirpath, _, files in os.walk(base):
            for name in files:
                if name.startswith(".") and name.endswith(".tmp"):
                    Path(dirpath, name).unlink(missing_ok=True)


def _sweep_uploads(storage: Storage, max_age: float) -> int:
    return len(Uploads(storage).sweep(max_age, now=time.time()))


