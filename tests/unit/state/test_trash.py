"""state.trash: a directory leaves its place at once and is deleted in the background; what a
killed berthd left in the trash is swept at the next start."""

from __future__ import annotations

import threading
from pathlib import Path

from berth.state.trash import Trash


def _tree(p: Path) -> Path:
    (p / "upper" / "a" / "b").mkdir(parents=True)
    (p / "upper" / "a" / "b" / "f").write_text("x")
    (p / "config.json").write_text("{}")
    return p


def test_discard_moves_now_and_deletes_later(tmp_path: Path) -> None:
    trash = Trash(tmp_path / "trash")
    (tmp_path / "trash").mkdir()
    gate = threading.Event()
    trash._pool.submit(gate.wait)   # hold the worker: the deletion cannot have run yet
    victim = _tree(tmp_path / "containers" / "c1")
    trash.discard(victim)
    assert not victim.exists()
    held = list((tmp_path / "trash").iterdir())
    assert [p.name.split(".")[0] for p in held] == ["c1"] and (held[0] / "upper" / "a" / "b" / "f").exists()
    gate.set()
    trash.flush()
    assert list((tmp_path / "trash").iterdir()) == []


def test_discard_without_a_trash_dir_deletes_in_place_and_ignores_missing(tmp_path: Path) -> None:
    trash = Trash(tmp_path / "no-trash")
    victim = _tree(tmp_path / "c2")
    trash.discard(victim)
    trash.discard(tmp_path / "never-was")
    trash.flush()
    assert not victim.exists()


def test_sweep_empties_what_a_killed_daemon_left(tmp_path: Path) -> None:
    (tmp_path / "trash").mkdir()
    for name in ("c3.0a1b2c3d", "c4.ffffffff"):
        _tree(tmp_path / "trash" / name)
    trash = Trash(tmp_path / "trash")
    trash.sweep()
    trash.flush()
    assert list((tmp_path / "trash").iterdir()) == []
