"""berthd sets its umask to 0022 at start, as dockerd's setDefaultUmask does: what it makes for
a container (the /etc files it mounts in, the mount points it creates through the overlay)
must not depend on the umask of whoever started it. Started from a shell with umask 077,
berthd used to make /etc/hosts, /etc/resolv.conf and /etc/hostname 0600: unreadable to a
container's non-root user (name lookups fail for such a process)."""

from __future__ import annotations

import os

import pytest

from tests.integration.daemon import Daemon, suite_args

pytestmark = pytest.mark.root


def test_a_restrictive_umask_at_start_does_not_reach_containers() -> None:
    old = os.umask(0o077)
    try:
        d = Daemon(args=suite_args())
        d.start()
    finally:
        os.umask(old)
    try:
        d.import_busybox()
        p = d.docker("run", "--rm", "-u", "nobody", "busybox", "sh", "-c",
                     "cat /etc/hosts /etc/resolv.conf /etc/hostname >/dev/null && stat -c %a /etc/hosts && umask")
        assert p.returncode == 0, p.stderr
        assert p.stdout.split() == ["644", "0022"], p.stdout
    finally:
        d.cleanup()
