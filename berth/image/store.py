"""Images and layers: each layer unpacked once, shared by every image that uses it.

Terms (DESIGN.md §3): image ID = digest of the config JSON; diff ID = digest of the
uncompressed layer tar; chain ID = identity of a layer stack. A layer directory lives at
``image/layers/<chain hex>/diff`` with a short link ``image/l/<short>`` for overlay options.

Crash safety: a layer is unpacked under ``image/tmp`` and renamed into place, then recorded;
an image row is written in one transaction with its tags. At start, ``sweep()`` removes
staging leftovers and layer dirs no row knows.

Besides the unpacked layers, the compressed blob each layer came from stays in the content
store (``image/blobs``, see content.py), recorded in ``layer_blobs``: push sends it again
unchanged and save decompresses it to the exact tar whose digest is the diff ID. A layer is
deleted when no image uses it any more (its reference count, computed from the images'
diff IDs), and its blobs with it.
"""

from __future__ import annotations

import builtins
import functools
import os
import secrets
import sqlite3
import shutil
import string
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from berth.errors import InvalidArgument, NotFound
from berth.image.content import ContentStore
from berth.image.unpack import LayerWriter, apply_layer
from berth.oci import reference
from berth.oci.image import ImageConfig, chain_ids, decode_config, digest, encode_config
from berth.state.db import Database
from berth.state.paths import LAYER_DIR_MODE, DataRoot


class NoSuchImage(NotFound):
    pass


@dataclass
class Image:
    id: str
    config_bytes: bytes
    config: ImageConfig
    size: int
    created: str
    tagged: str | None
    top: str | None

    @property
    def short_id(self) -> str:
        return self.id.removeprefix("sha256:")[:12]


@dataclass(frozen=True)
class Layer:
    chain_id: str
    diff_id: str
    parent: str | None
    size: int
    short: str


@functools.lru_cache(maxsize=8192)
def familiar(name: str) -> str:
    """A stored (normalized) reference as Docker shows it; names never change, so cached."""
    return reference.parse(name).familiar


def _short_name() -> str:
    alphabet = string.ascii_uppercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(26))


def now_rfc3339() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS layer_blobs (
    digest     TEXT PRIMARY KEY,   -- sha256 of the (compressed) blob in the content store
    diff_id    TEXT NOT NULL,      -- sha256 of the uncompressed tar
    media_type TEXT NOT NULL,
    size       INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS layer_blobs_diff ON layer_blobs(diff_id);
CREATE TABLE IF NOT EXISTS blob_sources (
    digest     TEXT NOT NULL,      -- a blob ...
    repository TEXT NOT NULL,      -- ... known to be in this registry repository (for mounts)
    PRIMARY KEY (digest, repository)
);
CREATE TABLE IF NOT EXISTS repo_digests (
    name     TEXT PRIMARY KEY,     -- normalized repository@sha256:...
    image_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS repo_digests_image ON repo_digests(image_id);
CREATE TABLE IF NOT EXISTS image_parents (
    id       TEXT PRIMARY KEY,     -- an image made here (commit) ...
    parent   TEXT NOT NULL         -- ... and the image it was made from (dockerd's SetParent)
);
"""

MT_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MT_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


def media_type_for(kind: str | None) -> str:
    return {"gzip": MT_DOCKER_LAYER, "zstd": MT_OCI_LAYER_ZSTD}.get(kind or "", MT_OCI_LAYER)


class ImageStore:
    def __init__(self, db: Database, root: DataRoot):
        self.db = db
        self.root = root
        self._cache: dict[str, Image] = {}
        self.content = ContentStore(root.root / "image")
        db.conn.executescript(_SCHEMA)

    # -- layers ---------------------------------------------------------------------------

    def layer(self, chain_id: str) -> Layer | None:
        row = self.db.one("SELECT chain_id, diff_id, parent, size, short FROM layers WHERE chain_id=?", (chain_id,))
        return Layer(*row) if row else None

    def layer_dir(self, chain_id: str) -> Path:
        return self.root.layer_dir(chain_id.removeprefix("sha256:")) / "diff"

    def stage_layer(self, src: BinaryIO) -> tuple[Path, str, int]:
        """Unpack a layer tar into staging (sync, no database: run it in a thread).

        Returns (staging dir, diff ID, size); hand them to commit_layer().
        """
        stage = Path(self.root.image_tmp) / secrets.token_hex(8)
        (stage / "diff").mkdir(parents=True)
        try:
            diff_id, size = apply_layer(src, stage / "diff")
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        return stage, diff_id, size

    def begin_layer(self) -> tuple[Path, LayerWriter]:
        """A staging dir and a writer to stream a layer into (sync; run writes in a thread).

        After ``writer.close()`` returned (diff ID, size), hand them to commit_layer(); on
        failure, ``discard_stage(stage)``.
        """
        stage = Path(self.root.image_tmp) / secrets.token_hex(8)
        (stage / "diff").mkdir(parents=True)
        try:
            return stage, LayerWriter(stage / "diff")
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise

    @staticmethod
    def discard_stage(stage: Path) -> None:
        shutil.rmtree(stage, ignore_errors=True)

    def record_blob(self, digest: str, diff_id: str, media_type: str, size: int) -> None:
        with self.db.tx() as c:
            c.execute("INSERT OR REPLACE INTO layer_blobs VALUES (?,?,?,?)", (digest, diff_id, media_type, size))

    def blobs_of(self, diff_id: str) -> list[tuple[str, str, int]]:
        """Stored compressed blobs of a layer: (digest, media type, size), present ones only."""
        rows = self.db.query("SELECT digest, media_type, size FROM layer_blobs WHERE diff_id=?", (diff_id,))
        return [(d, m, n) for d, m, n in rows if self.content.exists(d)]

    def blobs_of_digest(self, digest: str) -> list[str]:
        return [r[0] for r in self.db.query("SELECT diff_id FROM layer_blobs WHERE digest=?", (digest,))]

    def add_source(self, digest: str, repository: str) -> None:
        with self.db.tx() as c:
            c.execute("INSERT OR IGNORE INTO blob_sources VALUES (?,?)", (digest, repository))

    def sources_of(self, digest: str) -> list[str]:
        return [r[0] for r in self.db.query("SELECT repository FROM blob_sources WHERE digest=?", (digest,))]

    def add_repo_digest(self, iid: str, name: str) -> None:
        with self.db.tx() as c:
            c.execute("INSERT OR REPLACE INTO repo_digests VALUES (?,?)", (name, iid))

    def repo_digests_of(self, iid: str) -> list[str]:
        return [familiar(r[0]) for r in
                self.db.query("SELECT name FROM repo_digests WHERE image_id=? ORDER BY name", (iid,))]

    def resolve_digest(self, name: str) -> Image | None:
        row = self.db.one("SELECT image_id FROM repo_digests WHERE name=?", (name,))
        return self.get_by_id(row[0]) if row else None

    def commit_layer(self, stage: Path, diff_id: str, size: int, parent: str | None) -> Layer:
        """Move a staged layer into place on top of ``parent`` (a chain ID) and record it."""
        try:
            chain = diff_id if parent is None else digest(f"{parent} {diff_id}".encode())
            existing = self.layer(chain)
            if existing:
                return existing
            short = _short_name()
            final = self.root.layer_dir(chain.removeprefix("sha256:"))
            if final.exists():
                shutil.rmtree(final)
            os.chmod(stage, LAYER_DIR_MODE)
            os.rename(stage, final)
            os.symlink(f"../layers/{chain.removeprefix('sha256:')}/diff", self.root.short_links / short)
            with self.db.tx() as c:
                c.execute("INSERT INTO layers VALUES (?,?,?,?,?)", (chain, diff_id, parent, size, short))
            return Layer(chain, diff_id, parent, size, short)
        finally:
            if stage.exists():
                shutil.rmtree(stage, ignore_errors=True)

    def lower_dirs(self, image: Image) -> list[Path]:
        """The image's layer dirs as short paths, top layer first (overlay lowerdir order)."""
        out = []
        chain = image.top
        while chain:
            layer = self.layer(chain)
            if layer is None:
                raise NotFound(f"layer {chain} of image {image.id} is missing")
            out.append(self.root.short_links / layer.short)
            chain = layer.parent
        return out

    # -- images ---------------------------------------------------------------------------

    def create_image(self, config: ImageConfig, tags: list[str] = (),  # type: ignore[assignment]
                     raw: bytes | None = None) -> Image:
        """Record an image; ``raw`` are the config's exact bytes when they came from elsewhere
        (a registry, a saved tar): the image ID is their digest."""
        diff_chain = chain_ids(config.rootfs.diff_ids)
        top = diff_chain[-1] if diff_chain else None
        size = 0
        for cid in diff_chain:
            layer = self.layer(cid)
            if layer is None:
                raise InvalidArgument(f"layer {cid} is not present")
            size += layer.size
        if raw is None:
            raw = encode_config(config)
        iid = digest(raw)
        created = config.created or now_rfc3339()
        with self.db.tx() as c:
            c.execute("INSERT OR IGNORE INTO images VALUES (?,?,?,?,?,?)", (iid, raw, top, size, created, None))
            for t in tags:
                self._tag_in(c, iid, t)
        self._cache.pop(iid, None)
        return self.get_by_id(iid)

    def set_parent(self, iid: str, parent: str) -> None:
        with self.db.tx() as c:
            c.execute("INSERT OR REPLACE INTO image_parents VALUES (?,?)", (iid, parent))

    def parent_of(self, iid: str) -> str:
        """The image ``iid`` was made from, or ""."""
        row = self.db.one("SELECT parent FROM image_parents WHERE id=?", (iid,))
        return str(row[0]) if row else ""

    def _tag_in(self, c: sqlite3.Connection, iid: str, name: str) -> None:
        c.execute("INSERT OR REPLACE INTO tags VALUES (?,?)", (name, iid))
        c.execute("UPDATE images SET tagged=? WHERE id=?", (now_rfc3339(), iid))

    def get_by_id(self, iid: str) -> Image:
        img = self._cache.get(iid)
        if img is not None:
            return img
        row = self.db.one("SELECT id, config, size, created, tagged, top FROM images WHERE id=?", (iid,))
        if row is None:
            raise NoSuchImage(f"No such image: {iid}")
        img = Image(row[0], row[1], decode_config(row[1]), row[2], row[3], row[4], row[5])
        self._cache[iid] = img
        return img

    def resolve(self, name: str) -> Image:
        """By reference (name[:tag]), full or short ID, or ``sha256:`` ID prefix."""
        if not name:
            raise NoSuchImage("No such image: ")
        hexpart = name.removeprefix("sha256:")
        if all(ch in "0123456789abcdef" for ch in hexpart) and 1 <= len(hexpart) <= 64:
            # A reference that parses as a tag wins over an ID prefix, as in Docker.
            ref = None
            try:
                ref = reference.parse(name)
            except InvalidArgument:
                pass
            if ref is not None and not name.startswith("sha256:"):
                row = self.db.one("SELECT image_id FROM tags WHERE name=?", (str(ref),))
                if row:
                    return self.get_by_id(row[0])
            rows = self.db.query("SELECT id FROM images WHERE id LIKE ?", (f"sha256:{hexpart}%",))
            if len(rows) == 1 and (len(hexpart) == 64 or len(hexpart) >= 1):
                return self.get_by_id(rows[0][0])
            if len(rows) > 1:
                raise NoSuchImage(f"No such image: {name}")
        try:
            ref = reference.parse(name)
        except InvalidArgument:
            raise NoSuchImage(f"No such image: {name}") from None
        if ref.digest:
            img = self.resolve_digest(str(reference.Reference(ref.domain, ref.path, None, ref.digest)))
            if img is None:
                raise NoSuchImage(f"No such image: {ref.familiar}")
            return img
        row = self.db.one("SELECT image_id FROM tags WHERE name=?", (str(ref),))
        if row is None:
            raise NoSuchImage(f"No such image: {ref.familiar}")
        return self.get_by_id(row[0])

    def tags_of(self, iid: str) -> list[str]:
        return [familiar(r[0]) for r in self.db.query("SELECT name FROM tags WHERE image_id=? ORDER BY name", (iid,))]

    def names_by_image(self) -> tuple[dict[str, list[str]], dict[str, list[str]], dict[str, str]]:
        """Every image's tags, repo digests and parent, in three queries (the image list)."""
        tags: dict[str, list[str]] = {}
        digests: dict[str, list[str]] = {}
        for table, out in (("tags", tags), ("repo_digests", digests)):
            for name, iid in self.db.query(f"SELECT name, image_id FROM {table} ORDER BY name"):
                out.setdefault(iid, []).append(familiar(name))
        parents = {str(i): str(p) for i, p in self.db.query("SELECT id, parent FROM image_parents")}
        return tags, digests, parents

    def list(self) -> list[Image]:
        return [self.get_by_id(r[0]) for r in self.db.query("SELECT id FROM images ORDER BY created DESC")]

    def tag(self, name: str, repo: str, tag: str | None) -> None:
        img = self.resolve(name)
        ref = reference.parse(f"{repo}:{tag}" if tag else repo)
        if ref.digest:
            raise InvalidArgument("refusing to create a tag with a digest reference")
        with self.db.tx() as c:
            self._tag_in(c, img.id, str(ref))

    def untag(self, ref: str) -> None:
        with self.db.tx() as c:
            c.execute("DELETE FROM tags WHERE name=?", (ref,))

    def delete_image(self, iid: str) -> builtins.list[str]:
        """Delete the image row and every layer nothing else uses; returns deleted layer chain IDs."""
        img = self.get_by_id(iid)
        mine = chain_ids(img.config.rootfs.diff_ids)
        with self.db.tx() as c:
            c.execute("DELETE FROM tags WHERE image_id=?", (iid,))
            c.execute("DELETE FROM repo_digests WHERE image_id=?", (iid,))
            c.execute("DELETE FROM images WHERE id=?", (iid,))
            c.execute("DELETE FROM image_parents WHERE id=?", (iid,))
        self._cache.pop(iid, None)
        used = self.used_layers()
        gone = []
        for cid in reversed(mine):
            if cid in used:
                continue
            layer = self.layer(cid)
            with self.db.tx() as c:
                c.execute("DELETE FROM layers WHERE chain_id=?", (cid,))
            if layer:
                try:
                    os.unlink(self.root.short_links / layer.short)
                except FileNotFoundError:
                    pass
            shutil.rmtree(self.root.layer_dir(cid.removeprefix("sha256:")), ignore_errors=True)
            gone.append(cid)
            if layer and not self.db.one("SELECT 1 FROM layers WHERE diff_id=?", (layer.diff_id,)):
                self._drop_blobs(layer.diff_id)
        return gone

    def _drop_blobs(self, diff_id: str) -> None:
        rows = self.db.query("SELECT digest FROM layer_blobs WHERE diff_id=?", (diff_id,))
        with self.db.tx() as c:
            c.execute("DELETE FROM layer_blobs WHERE diff_id=?", (diff_id,))
            for (d,) in rows:
                c.execute("DELETE FROM blob_sources WHERE digest=?", (d,))
        for (d,) in rows:
            self.content.delete(d)

    def used_layers(self) -> set[str]:
        """Chain IDs some image uses (a layer's reference count is how many images list it)."""
        used: set[str] = set()
        for other in self.list():
            used.update(chain_ids(other.config.rootfs.diff_ids))
        return used

    def refcounts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for img in self.list():
            for cid in chain_ids(img.config.rootfs.diff_ids):
                counts[cid] = counts.get(cid, 0) + 1
        return counts

    def _quarantine_images(self) -> None:
        """An image whose config is not the bytes its ID names, or does not decode, is moved
        to the quarantine directory (its tags go with it) rather than failing every listing."""
        for iid, config in self.db.query("SELECT id, config FROM images"):
            try:
                if digest(bytes(config)) != iid:
                    raise ValueError("config digest does not match the image ID")
                decode_config(bytes(config))
            except Exception as e:  # whatever the decoder raises on bytes it cannot read
                self.db.quarantine_row("images", "id", iid, config, e)
                with self.db.tx() as c:
                    c.execute("DELETE FROM tags WHERE image_id=?", (iid,))

    def sweep(self) -> None:
        """Remove staging leftovers and layer dirs that no row records (crash recovery)."""
        shutil.rmtree(self.root.image_tmp, ignore_errors=True)
        self.root.image_tmp.mkdir(parents=True, exist_ok=True)
        self.content.sweep()
        self._quarantine_images()
        known = {r[0].removeprefix("sha256:") for r in self.db.query("SELECT chain_id FROM layers")}
        shorts = {r[0] for r in self.db.query("SELECT short FROM layers")}
        for d in self.root.layers.iterdir():
            if d.name not in known:
                shutil.rmtree(d, ignore_errors=True)
        for link in self.root.short_links.iterdir():
            if link.name not in shorts:
                link.unlink(missing_ok=True)
        # A layer row whose directory vanished cannot be used: drop rows of broken layers.
        for cid in known:
            if not self.root.layer_dir(cid).exists():
                with self.db.tx() as c:
                    c.execute("DELETE FROM layers WHERE chain_id=?", (f"sha256:{cid}",))
