"""state.write_atomic: the one writer for files that must never be seen half-written."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from berth.state.atomic import write_atomic

REPO = Path(__file__).resolve().parents[3]


def test_replaces_and_sets_mode(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    target.write_bytes(b"old")
    write_atomic(target, b"new", mode=0o600)
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["f.json"]


def test_accepts_str_paths(tmp_path: Path) -> None:
    write_atomic(str(tmp_path / "exit.json"), b"{}", sync=False)
    assert (tmp_path / "exit.json").read_bytes() == b"{}"


def test_failure_keeps_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")
    with pytest.raises(TypeError):
        write_atomic(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f"]


def test_threads_writing_one_file_never_collide(tmp_path: Path) -> None:
    target = tmp_path / "f"
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for _ in range(50):
                write_atomic(target, str(n).encode() * 1000, sync=False)
        except BaseException as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    body = target.read_bytes()
    assert len(body) == 1000 and len(set(body)) == 1
    assert os.listdir(tmp_path) == ["f"]


def test_cheap_to_import() -> None:
    """The shim imports it: it may add only itself and two tiny stdlib modules."""
    code = ("import sys; before = set(sys.modules); import berth.state.atomic; "
            "print(' '.join(sorted(set(sys.modules) - before)))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=REPO, check=True)
    added = set(r.stdout.split()) - {"berth", "berth.state", "berth.state.atomic"}
    assert added <= {"__future__", "itertools"}, added


def test_no_other_atomic_writers() -> None:
    """One writer: no module fsyncs and renames a file of its own any more. The content
    store publishes verified blobs (a rename, never a write of new bytes): it is the exception."""
    allowed = {"berth/state/atomic.py", "berth/image/content.py"}
    offenders = []
    for p in sorted((REPO / "berth").rglob("*.py")):
        text = p.read_text()
        if str(p.relative_to(REPO)) in allowed:
            continue
        if "fsync(" in text and ("os.rename(" in text or "os.replace(" in text):
            offenders.append(str(p.relative_to(REPO)))
    assert not offenders
