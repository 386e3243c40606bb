"""Subordinate ids for user namespaces: berth's pool in /etc/subuid and /etc/subgid, and the
ranges handed out from it, one per container (SQLite table ``userns_ranges``).

The pool is every ``berth:<start>:<count>`` line of the two files. At first use, when the
user has no line, one is appended after the highest range already there (shadow's
``useradd`` picks ranges the same way), so ids berth hands out never overlap another user's.
A container's range is the lowest free offset that fits; ranges are disjoint (the allocation
and the record are one transaction) and survive restarts; ``release`` frees one.

    pool = SubidPool(db, SubidFiles(Path("/etc/subuid"), Path("/etc/subgid")))
    r = pool.allocate(cid, 65536)       # IdRange(uid=..., gid=..., size=65536)
    pool.get(cid) == r; pool.release(cid)
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from berth.errors import InvalidArgument, Unavailable
from berth.state.atomic import write_atomic
from berth.state.db import Database

POOL_USER = "berth"
DEFAULT_SIZE = 65536
POOL_COUNT = 65536 * 1024  # what a first use appends: room for 1,024 default ranges
_FIRST = 100000  # shadow's SUB_UID_MIN

SCHEMA = """
CREATE TABLE IF NOT EXISTS userns_ranges (
    container_id TEXT PRIMARY KEY,
    uid   INTEGER NOT NULL,        -- first host uid of the range (container uid 0)
    gid   INTEGER NOT NULL,
    size  INTEGER NOT NULL
);
"""


class RangesExhausted(Unavailable):
    """No free range of the asked size is left in the pool."""


@dataclass(frozen=True)
class IdRange:
    uid: int
    gid: int
    size: int


@dataclass(frozen=True)
class SubidFiles:
    subuid: Path
    subgid: Path


def parse(text: str, user: str) -> list[tuple[int, int]]:
    """``(start, count)`` of every line of ``user`` in a subuid/subgid file."""
    out = []
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[0] == user and parts[1].isdigit() and parts[2].isdigit():
            out.append((int(parts[1]), int(parts[2])))
    return out


def _all_ranges(text: str) -> list[tuple[int, int]]:
    out = []
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            out.append((int(parts[1]), int(parts[2])))
    return out


def ensure_entry(path: Path, user: str, count: int = POOL_COUNT) -> list[tuple[int, int]]:
    """``user``'s ranges in ``path``, appending one after every existing range (aligned to
    65,536) when there is none. The file is locked while it is read and rewritten."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        text = path.read_text()
        mine = parse(text, user)
        if mine:
            return mine
        end = max([_FIRST, *(s + n for s, n in _all_ranges(text))])
        start = -(-end // DEFAULT_SIZE) * DEFAULT_SIZE
        if text and not text.endswith("\n"):
            text += "\n"
        write_atomic(path, f"{text}{user}:{start}:{count}\n".encode())
        return [(start, count)]
    finally:
        os.close(fd)


def _lowest_fit(pool: list[tuple[int, int]], used: list[tuple[int, int]], size: int) -> int | None:
    """The lowest start in ``pool`` where ``size`` ids overlap none of ``used``."""
    for start, count in sorted(pool):
        at = start
        for u_start, u_size in sorted(used):
            if u_start + u_size <= at or u_start >= start + count:
                continue
            if u_start - at >= size:
                break
            at = max(at, u_start + u_size)
        if at + size <= start + count:
            return at
    return None


def parse_size(mode: str) -> int:
    """``auto`` / ``auto:size=N`` -> N (default 65,536). Raises InvalidArgument."""
    name, _, opts = mode.partition(":")
    size = DEFAULT_SIZE
    for opt in filter(None, opts.split(",")):
        key, _, value = opt.partition("=")
        if key != "size" or not value.isdigit():
            raise InvalidArgument(f"invalid USER mode: {mode}: unknown option {opt!r} (auto takes size=N)")
        size = int(value)
    if name != "auto":
        raise InvalidArgument(f"invalid USER mode: {mode}")
    if not 1 <= size <= 1 << 31:
        raise InvalidArgument(f"invalid USER mode: {mode}: size must be between 1 and 2147483648")
    return size


class SubidPool:
    """berth's subordinate ids and the ranges given to containers."""

    def __init__(self, db: Database, files: SubidFiles, user: str = POOL_USER):
        self.db = db
        self.files = files
        self.user = user
        db.conn.executescript(SCHEMA)

    def _pools(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        return ensure_entry(self.files.subuid, self.user), ensure_entry(self.files.subgid, self.user)

    def allocate(self, container_id: str, size: int = DEFAULT_SIZE) -> IdRange:
        """A free range of ``size`` uids and gids for the container, recorded. Raises
        RangesExhausted."""
        uids, gids = self._pools()
        with self.db.tx() as tx:
            rows = tx.execute("SELECT uid, gid, size FROM userns_ranges").fetchall()
            uid = _lowest_fit(uids, [(u, n) for u, _, n in rows], size)
            gid = _lowest_fit(gids, [(g, n) for _, g, n in rows], size)
            if uid is None or gid is None:
                total = sum(n for _, n in uids)
                raise RangesExhausted(
                    f"user namespace: no free range of {size} ids left in the {self.user!r} entries of "
                    f"{self.files.subuid} and {self.files.subgid} ({total} ids, {len(rows)} ranges in use)")
            tx.execute("INSERT OR REPLACE INTO userns_ranges VALUES (?, ?, ?, ?)", (container_id, uid, gid, size))
        return IdRange(uid, gid, size)

    def get(self, container_id: str) -> IdRange | None:
        row = self.db.one("SELECT uid, gid, size FROM userns_ranges WHERE container_id = ?", (container_id,))
        return IdRange(*row) if row else None

    def release(self, container_id: str) -> None:
        with self.db.tx() as tx:
            tx.execute("DELETE FROM userns_ranges WHERE container_id = ?", (container_id,))

    def forget_except(self, live: set[str]) -> None:
        """At start: free the ranges of containers no record knows (a crash between steps)."""
        for (cid,) in self.db.query("SELECT container_id FROM userns_ranges"):
            if cid not in live:
                self.release(cid)


def remap_ranges(files: SubidFiles, user: str, group: str) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """``userns-remap``'s ranges: ``user``'s lines of subuid and ``group``'s of subgid (created
    at first use as for the pool). Docker maps them, concatenated, from container id 0."""
    return ensure_entry(files.subuid, user), ensure_entry(files.subgid, group)
