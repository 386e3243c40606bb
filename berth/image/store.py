"""Images and layers: each layer unpacked once, shared by every image that uses it.

Terms (DESIGN.md §3): image ID = digest of the config JSON; diff ID = digest of the
uncompressed layer tar; chain ID = identity of a layer stack. A layer directory lives at
``image/layers/<chain hex>/diff`` with a short link ``image/l/<short>`` for overlay options.

Crash safety: a layer is unpacked under ``image/tmp`` and renamed into place, then recorded;
an image row is written in one transaction with its tags. At start, ``sweep()`` removes
staging leftovers and layer dirs no row knows.
"""

from __future__ import annotations

import os
import secrets
import shutil
import string
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from berth.errors import Conflict, InvalidArgument, NotFound
from berth.image.unpack import apply_layer
from berth.oci import reference
from berth.oci.image import ImageConfig, chain_ids, decode_config, digest, encode_config
from berth.state.db import Database
from berth.state.paths import DataRoot


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


def _short_name() -> str:
    alphabet = string.ascii_uppercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(26))


def now_rfc3339() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


class ImageStore:
    def __init__(self, db: Database, root: DataRoot):
        self.db = db
        self.root = root
        self._cache: dict[str, Image] = {}

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

    def create_image(self, config: ImageConfig, tags: list[str] = ()) -> Image:  # type: ignore[assignment]
        diff_chain = chain_ids(config.rootfs.diff_ids)
        top = diff_chain[-1] if diff_chain else None
        size = 0
        for cid in diff_chain:
            layer = self.layer(cid)
            if layer is None:
                raise InvalidArgument(f"layer {cid} is not present")
            size += layer.size
        raw = encode_config(config)
        iid = digest(raw)
        created = config.created or now_rfc3339()
        with self.db.tx() as c:
            c.execute("INSERT OR IGNORE INTO images VALUES (?,?,?,?,?,?)", (iid, raw, top, size, created, None))
            for t in tags:
                self._tag_in(c, iid, t)
        self._cache.pop(iid, None)
        return self.get_by_id(iid)

    def _tag_in(self, c, iid: str, name: str) -> None:
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
            raise NoSuchImage(f"No such image: {ref.familiar}")
        row = self.db.one("SELECT image_id FROM tags WHERE name=?", (str(ref),))
        if row is None:
            raise NoSuchImage(f"No such image: {ref.familiar}")
        return self.get_by_id(row[0])

    def tags_of(self, iid: str) -> list[str]:
        return [reference.parse(r[0]).familiar for r in
                self.db.query("SELECT name FROM tags WHERE image_id=? ORDER BY name", (iid,))]

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

    def delete_image(self, iid: str) -> list[str]:
        """Delete the image row and every layer nothing else uses; returns deleted layer chain IDs."""
        img = self.get_by_id(iid)
        mine = chain_ids(img.config.rootfs.diff_ids)
        with self.db.tx() as c:
            c.execute("DELETE FROM tags WHERE image_id=?", (iid,))
            c.execute("DELETE FROM images WHERE id=?", (iid,))
        self._cache.pop(iid, None)
        used: set[str] = set()
        for other in self.list():
            used.update(chain_ids(other.config.rootfs.diff_ids))
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
        return gone

    def sweep(self) -> None:
        """Remove staging leftovers and layer dirs that no row records (crash recovery)."""
        shutil.rmtree(self.root.image_tmp, ignore_errors=True)
        self.root.image_tmp.mkdir(parents=True, exist_ok=True)
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
