"""SQLite metadata store (WAL mode, one transaction per change).

The schema is created here; the engine's stores own their queries.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, cast

SCHEMA = """
CREATE TABLE IF NOT EXISTS layers (
    chain_id TEXT PRIMARY KEY,     -- sha256:<hex>
    diff_id  TEXT NOT NULL,
    parent   TEXT,                 -- chain id of the layer below, NULL for a base layer
    size     INTEGER NOT NULL,     -- bytes unpacked
    short    TEXT NOT NULL         -- name of the short link in image/l/
);
CREATE TABLE IF NOT EXISTS images (
    id       TEXT PRIMARY KEY,     -- sha256:<hex> of the config
    config   BLOB NOT NULL,        -- the image config JSON, exactly the bytes hashed
    top      TEXT,                 -- chain id of the top layer (NULL: no layers)
    size     INTEGER NOT NULL,
    created  TEXT NOT NULL,
    tagged   TEXT                  -- LastTagTime
);
CREATE TABLE IF NOT EXISTS tags (
    name     TEXT PRIMARY KEY,     -- normalized repository:tag
    image_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tags_image ON tags(image_id);
CREATE TABLE IF NOT EXISTS containers (
    id       TEXT PRIMARY KEY,
    name     TEXT NOT NULL UNIQUE,
    image_id TEXT NOT NULL,
    data     BLOB NOT NULL         -- msgspec JSON of engine.model.Container
);
CREATE INDEX IF NOT EXISTS containers_image ON containers(image_id);
"""


class Database:
    def __init__(self, path: Path):
        # Container configs (their Env too) live here: the file is root's alone. SQLite gives
        # its -wal and -shm files the database file's mode.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
        for f in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            if f.exists():
                os.chmod(f, 0o600)
        self.path = path
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(SCHEMA)
        # One connection serves the loop and worker threads (pull and push workers record
        # sources and blobs): a transaction is one thread's at a time.
        self._tx_lock = threading.Lock()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction. A full disk raises OSError(ENOSPC) naming the file, and leaves no
        transaction open (a COMMIT that fails is rolled back, or every later one would fail)."""
        with self._tx_lock:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self.conn
                    self.conn.execute("COMMIT")
                except BaseException:
                    if self.conn.in_transaction:
                        self.conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as e:
                raise _os_error(e, self.path) from e

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, args).fetchall()

    def one(self, sql: str, args: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        return cast("tuple[Any, ...] | None", self.conn.execute(sql, args).fetchone())

    def close(self) -> None:
        self.conn.close()


def _os_error(e: sqlite3.OperationalError, path: Path) -> Exception:
    """SQLite's "database or disk is full" as the OSError it is (Docker's "no space left on device")."""
    if getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    return e
