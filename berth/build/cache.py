"""The build cache: which image a build step produced from which parent (SQLite, so it
survives restarts).

Every step's result is an image in the store (as in Docker's classic builder); this table
maps ``key`` = sha256(parent image ID, the step, its inputs) to that image. Images that are
only a step's result (untagged, the parent of another cached step) are *intermediate*: they
are hidden from ``docker images``, kept by ``image prune`` (dangling means no children) and
removed by ``builder prune``. A row whose image is gone is a miss and is dropped.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

from berth.state.db import Database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS build_cache (
    key        TEXT PRIMARY KEY,   -- sha256 of (parent image, step, inputs)
    parent     TEXT NOT NULL,      -- image ID the step ran on ("" for scratch)
    image_id   TEXT NOT NULL,      -- the step's result
    created_by TEXT NOT NULL,      -- the history line (Description in system df)
    size       INTEGER NOT NULL,   -- bytes of the layer the step added (0: metadata only)
    created    REAL NOT NULL,
    last_used  REAL NOT NULL,
    uses       INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS build_cache_image ON build_cache(image_id);
CREATE INDEX IF NOT EXISTS build_cache_parent ON build_cache(parent);
CREATE TABLE IF NOT EXISTS build_kept (
    container_id TEXT PRIMARY KEY  -- a step container kept on purpose (rm=0): not swept at start
);
"""


@dataclass(frozen=True)
class Record:
    key: str
    parent: str
    image_id: str
    created_by: str
    size: int
    created: float
    last_used: float
    uses: int


def step_key(parent: str, step: object) -> str:
    """The cache key of a step: its parent image and a JSON-able description of everything
    that decides its result."""
    return hashlib.sha256(json.dumps([parent, step], sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class BuildCache:
    def __init__(self, db: Database):
        self.db = db
        db.conn.executescript(_SCHEMA)

    def get(self, key: str) -> Record | None:
        row = self.db.one("SELECT key, parent, image_id, created_by, size, created, last_used, uses "
                          "FROM build_cache WHERE key=?", (key,))
        return Record(*row) if row else None

    def touch(self, key: str) -> None:
        with self.db.tx() as c:
            c.execute("UPDATE build_cache SET last_used=?, uses=uses+1 WHERE key=?", (time.time(), key))

    def put(self, key: str, parent: str, image_id: str, created_by: str, size: int) -> None:
        now = time.time()
        with self.db.tx() as c:
            c.execute("INSERT OR REPLACE INTO build_cache VALUES (?,?,?,?,?,?,?,1)",
                      (key, parent, image_id, created_by, size, now, now))

    def drop(self, key: str) -> None:
        with self.db.tx() as c:
            c.execute("DELETE FROM build_cache WHERE key=?", (key,))

    def drop_image(self, image_id: str) -> None:
        with self.db.tx() as c:
            c.execute("DELETE FROM build_cache WHERE image_id=?", (image_id,))

    def records(self) -> list[Record]:
        return [Record(*r) for r in self.db.query(
            "SELECT key, parent, image_id, created_by, size, created, last_used, uses FROM build_cache "
            "ORDER BY created")]

    def parents(self) -> set[str]:
        """Image IDs some cached step ran on (they have children)."""
        return {r[0] for r in self.db.query("SELECT DISTINCT parent FROM build_cache WHERE parent != ''")}

    def keep_container(self, cid: str) -> None:
        with self.db.tx() as c:
            c.execute("INSERT OR IGNORE INTO build_kept VALUES (?)", (cid,))

    def kept_containers(self, existing: set[str] | None = None) -> set[str]:
        """Step containers kept with rm=0; rows of containers no longer in ``existing`` go."""
        kept = {r[0] for r in self.db.query("SELECT container_id FROM build_kept")}
        if existing is not None and kept - existing:
            with self.db.tx() as c:
                c.executemany("DELETE FROM build_kept WHERE container_id=?", [(k,) for k in kept - existing])
            kept &= existing
        return kept

    def images(self) -> set[str]:
        return {r[0] for r in self.db.query("SELECT DISTINCT image_id FROM build_cache")}
