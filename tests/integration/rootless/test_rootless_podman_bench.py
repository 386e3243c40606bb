"""The rootless podman column of ``bench/engine.py --rootless`` (issue 15): podman as a throwaway
user of its own, with berthd's busybox (``docker save`` from berthd, ``podman load``), a container
run and a published port reached from the host, and nothing of it left afterwards (its
processes, its storage, its user). podman is the benchmark's only: where it is not installed the
bench prints why and goes on without the column (tested here with a PATH that lacks it), and
the podman test skips.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest

from tests.integration.daemon import ROOT, Daemon
from tests.integration.rootless.netclient import http_get
from tests.integration.rootless.user import need_tools

pytestmark = pytest.mark.root

sys.path.insert(0, str(ROOT / "bench"))


def test_without_podman_the_bench_says_why_and_has_no_column(
        berthd: Daemon, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import engine
    monkeypatch.setenv("PATH", str(tmp_path))
    assert engine.start_podman(berthd) is None
    assert "podman is not installed (apt-get install podman): no rootless podman column" in capsys.readouterr().out
    assert set(engine.clis({"berthd": berthd.host}, None)) == {"berthd"}


def test_rootless_podman_runs_berths_busybox_and_leaves_nothing(berthd: Daemon, busybox: str) -> None:
    if shutil.which("podman") is None:
        pytest.skip("Debian's podman is not installed: the bench's column only, no test depends on it")
    need_tools()
    import engine
    from tests.integration.images.registry_proc import free_port
    pm = engine.start_podman(berthd)
    assert pm is not None
    try:
        assert pm.user.name.startswith("brl") and pm.storage.parent == Path("/var/tmp")
        assert pm.out("run", "--rm", "busybox", "id", "-u").strip() == "0"
        # the same image as berthd's: its id is the one `docker save` wrote
        want = engine.docker_out(berthd.host, "image", "inspect", "-f", "{{.Id}}", "busybox").strip()
        assert pm.out("image", "inspect", "-f", "{{.Id}}", "busybox").strip() == want.removeprefix("sha256:")
        port = free_port()
        cli = engine.clis({}, pm)
        cid = cli["podman"]("run", "-d", "-p", f"127.0.0.1:{port}:80", "busybox", "httpd", "-f", "-p", "80",
                            "-h", "/etc").strip()
        deadline = time.monotonic() + 20
        while True:
            try:
                assert http_get(f"http://127.0.0.1:{port}/hostname").strip() == cid[:12].encode()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert pm.user.pids(), "podman's processes run as its user"
        assert pm.timed("run", "--rm", "busybox", "true") > 0
    finally:
        pm.remove()
    assert pm.leftovers() == []
