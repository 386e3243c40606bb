"""SQLite metadata store (WAL mode, one transaction per change).

The schema is created here; the engine's stores own their queries.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar, cast

log = logging.getLogger("berth.state")
T = TypeVar("T")

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
    """The one SQLite file. A file SQLite cannot read (truncated, overwritten) is moved to
    ``<data-root>/quarantine/`` with an error in the log and a new, empty one is started
    (``quarantined`` is then True): berthd comes up rather than failing at every start. A row
    that does not decode (``rows``) is moved there too, alone."""

    def __init__(self, path: Path):
        self.path = path
        self.quarantine = path.parent / "quarantine"
        self.quarantined = False
        try:
            self.conn = self._open()
        except sqlite3.DatabaseError as e:
            log.error("state database %s is unreadable (%s): moved to %s, starting with an empty one",
                      path, e, self._quarantine_files())
            self.quarantined = True
            self.conn = self._open()
        # One connection serves the loop and worker threads (pull and push workers record
        # sources and blobs): a transaction is one thread's at a time.
        self._tx_lock = threading.Lock()

    def _open(self) -> sqlite3.Connection:
        # Container configs (their Env too) live here: the file is root's alone. SQLite gives
        # its -wal and -shm files the database file's mode.
        path = self.path
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
        for f in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            if f.exists():
                os.chmod(f, 0o600)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            ok = conn.execute("PRAGMA quick_check").fetchone()
            if not ok or ok[0] != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {ok[0] if ok else 'no answer'}")
            conn.executescript(SCHEMA)
        except BaseException:
            conn.close()
            raise
        return conn

    def _quarantine_files(self) -> Path:
        dest = self.quarantine / f"{self.path.name}.{time.strftime('%Y%m%dT%H%M%S')}.{os.getpid()}"
        dest.mkdir(parents=True, mode=0o700)
        for suffix in ("", "-wal", "-shm"):
            f = Path(f"{self.path}{suffix}")
            if f.exists():
                os.replace(f, dest / f.name)
        return dest

    def rows(self, table: str, key: str, decode: Callable[[bytes], T]) -> list[tuple[Any, T]]:
        """Every row of ``table`` as (key, decoded data); a row that does not decode is moved
        to the quarantine directory (``<table>-<key>``) and deleted, with an error in the log."""
        out = []
        for k, raw in self.query(f"SELECT {key}, data FROM {table}"):
            try:
                out.append((k, decode(raw)))
            except Exception as e:  # whatever the decoder raises on bytes it cannot read
                self.quarantine_row(table, key, k, raw, e)
        return out

    def quarantine_row(self, table: str, key: str, k: str, raw: bytes | str, why: object) -> None:
        self.quarantine.mkdir(mode=0o700, exist_ok=True)
        dest = self.quarantine / f"{table}-{str(k).replace('/', '_')}"
        dest.write_bytes(raw.encode() if isinstance(raw, str) else bytes(raw))
        with self.tx() as tx:
            tx.execute(f"DELETE FROM {table} WHERE {key}=?", (k,))
        log.error("%s %s: unreadable record (%s), moved to %s", table, k, why, dest)

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
