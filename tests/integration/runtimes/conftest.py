"""A berthd whose default runtime is an external OCI runtime (runc, then crun), so the
existing container tests imported by this package's modules run unchanged on it.

Debian's crun 1.8 refuses a hybrid cgroup host whose cgroup2 hierarchy has any controller
("cgroups in hybrid mode not supported, drop all controllers from cgroupv2"). On such a host
it is driven through a wrapper that hides /sys/fs/cgroup/unified from crun in a private
mount namespace (crun then sees a plain v1 host); everything else is crun's own.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from typing import Iterator

import pytest

from tests.integration.daemon import Daemon

RUNTIMES = ("runc", "crun")


def _crun_path(base: Path) -> str:
    crun = shutil.which("crun")
    assert crun is not None
    unified = Path("/sys/fs/cgroup/unified/cgroup.controllers")
    if not unified.exists() or not unified.read_text().strip():
        return crun
    wrapper = base / "crun-v1"
    wrapper.write_text("#!/bin/sh\nexec unshare --mount --propagation private -- sh -c "
                       f"'umount -l /sys/fs/cgroup/unified && exec {crun} \"$@\"' crun \"$@\"\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return str(wrapper)


@pytest.fixture(scope="package", params=RUNTIMES)
def berthd(request: pytest.FixtureRequest) -> Iterator[Daemon]:
    if os.geteuid() != 0:
        pytest.skip("needs uid 0")
    name = request.param
    if shutil.which(name) is None:
        pytest.fail(f"{name} is not installed (Debian's {name} package; .ci/run installs it)")
    d = Daemon()
    path = shutil.which("runc") if name == "runc" else _crun_path(d.base)
    d.extra_args = ["--add-runtime", f"{name}={path}", "--default-runtime", name]
    d.start()
    try:
        yield d
    finally:
        d.cleanup()


@pytest.fixture(scope="package")
def busybox(berthd: Daemon) -> str:
    berthd.import_busybox("busybox:latest")
    return "busybox:latest"
