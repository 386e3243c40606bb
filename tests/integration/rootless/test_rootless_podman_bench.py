"""The rootless podman column of ``bench/engine.py --rootless`` (issue 15) is the benchmark's
only: no test depends on podman. Where it is not installed the bench prints why and goes on
without the column (tested here with a PATH that lacks it)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.integration.daemon import ROOT, Daemon

pytestmark = pytest.mark.root

sys.path.insert(0, str(ROOT / "bench"))


def test_without_podman_the_bench_says_why_and_has_no_column(
        berthd: Daemon, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import engine
    monkeypatch.setenv("PATH", str(tmp_path))
    assert engine.start_podman(berthd) is None
    assert "podman is not installed (apt-get install podman): no rootless podman column" in capsys.readouterr().out
    assert set(engine.clis({"berthd": berthd.host}, None)) == {"berthd"}
