"""nsexec.build with the system cc into a directory of the test's: a new source's build removes
the builds of older sources but the newest of them (a running berthd may still use it)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from berth.runtime import nsexec


def test_a_new_build_keeps_only_the_newest_older_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.fail("no C compiler (.ci/run installs gcc)")
    src = tmp_path / "berth-nsexec.c"
    shutil.copyfile(nsexec.SOURCE, src)
    monkeypatch.setattr(nsexec, "SOURCE", src)
    monkeypatch.setattr(nsexec, "_target", None)
    olds = [tmp_path / f"berth-nsexec-{i:016x}" for i in range(3)]
    for i, p in enumerate(olds):
        p.write_bytes(b"an older build")
        os.utime(p, (1000 + i, 1000 + i))
    built = nsexec.build()
    assert built is not None and built == nsexec.target()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["berth-nsexec.c", built.name, olds[2].name])
    assert nsexec.build() == built  # built already: nothing removed, nothing made
    assert sorted(p.name for p in tmp_path.iterdir()) == names
