"""`run --rm` and `rm` take the container's directory away at once (a rename into the data
root's trash/) and delete it in the background, after the wait returns; what a berthd killed
with -9 left in the trash is deleted at its next start."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.conftest import DOCKER
from tests.integration.daemon import Daemon, suite_args

pytestmark = pytest.mark.root


def _empties(p: Path, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while any(p.iterdir()):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_removed_containers_leave_no_directory_and_the_trash_empties() -> None:
    d = Daemon(args=suite_args())
    try:
        d.start()
        d.import_busybox()
        image = "busybox:latest"
        trash = d.data_root / "trash"
        env = d.env
        run = subprocess.run([DOCKER, "run", "--rm", image, "sh", "-c", "mkdir -p /a/b && echo x > /a/b/f"],
                             env=env, capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        cid = subprocess.run([DOCKER, "create", image, "true"], env=env, capture_output=True, text=True,
                             check=True).stdout.strip()
        assert (d.data_root / "containers" / cid).is_dir()
        subprocess.run([DOCKER, "rm", cid], env=env, check=True, capture_output=True)
        assert list((d.data_root / "containers").iterdir()) == []
        assert _empties(trash)
        # Left by a berthd killed in the middle of a deletion: swept at the next start.
        (trash / f"{cid}.0badf00d" / "upper" / "deep").mkdir(parents=True)
        (trash / f"{cid}.0badf00d" / "upper" / "deep" / "f").write_text("x")
        d.kill9()
        d.start()
        assert _empties(trash)
    finally:
        d.cleanup()
