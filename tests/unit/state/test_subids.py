"""berth's subordinate id pool (state/subids.py): the entry made at first use after every other
user's, disjoint ranges, freed on release, kept across a reopen of the database."""

from __future__ import annotations

from pathlib import Path

import pytest

from berth.errors import InvalidArgument
from berth.state.db import Database
from berth.state.subids import (RangesExhausted, SubidFiles, SubidPool, ensure_entry, parse, parse_size)


def _files(tmp_path: Path, text: str = "") -> SubidFiles:
    files = SubidFiles(tmp_path / "subuid", tmp_path / "subgid")
    files.subuid.write_text(text)
    files.subgid.write_text(text)
    return files


def test_first_use_appends_after_every_range(tmp_path: Path) -> None:
    f = tmp_path / "subuid"
    f.write_text("alice:100000:65536\nbob:300000:10\n")
    assert ensure_entry(f, "berth", 1000) == [(327680, 1000)]  # after bob's end, aligned to 65,536
    assert f.read_text().endswith("bob:300000:10\nberth:327680:1000\n")
    assert ensure_entry(f, "berth", 1000) == [(327680, 1000)]  # made once
    assert parse(f.read_text(), "alice") == [(100000, 65536)]


def test_ranges_are_disjoint_freed_and_persistent(tmp_path: Path) -> None:
    files = _files(tmp_path, "berth:200000:190000\n")
    db = Database(tmp_path / "berth.db")
    pool = SubidPool(db, files)
    a = pool.allocate("a")
    b = pool.allocate("b", 1000)
    c = pool.allocate("c")
    assert (a.uid, b.uid, c.uid) == (200000, 265536, 266536)
    assert a.gid == a.uid and b.size == 1000
    with pytest.raises(RangesExhausted, match="no free range of 65536 ids"):
        pool.allocate("d")  # 57,928 ids are left past c
    pool.release("b")
    assert pool.allocate("e", 1000).uid == 265536  # the lowest hole that fits
    db.close()
    again = SubidPool(Database(tmp_path / "berth.db"), files)
    assert again.get("a") == a and again.get("b") is None
    again.forget_except({"a"})
    assert again.get("c") is None and again.get("e") is None and again.allocate("f").uid == 265536


def test_auto_size(tmp_path: Path) -> None:
    assert parse_size("auto") == 65536
    assert parse_size("auto:size=1000") == 1000
    for bad in ("auto:size=x", "auto:uidmapping=0:1:1", "auto:size=0", "private"):
        with pytest.raises(InvalidArgument, match="invalid USER mode"):
            parse_size(bad)
