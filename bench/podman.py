"""Rootless podman (Debian's ``podman``) as a column of ``bench/engine.py --rootless`` (issue 15).

    pm = RootlessPodman.make()          # None (and why, from absent()) where podman is not installed
    pm.load(archive)                    # a docker-archive (``docker save`` from berthd)
    pm.timed("run", "--rm", "busybox", "true")
    pm.remove()                         # its processes, its storage, its user

podman runs as a throwaway user of its own (``useradd`` with subordinate ranges, as the rootless
berthd's, ``tests/integration/rootless/user.py``), through the same launcher (setpriv, in a private
mount namespace where /dev/net/tun is open to the user), with its storage under a temporary
directory of its own. What Debian's podman 4.3 does rootless on this kind of host:

- storage: kernel overlayfs in its user namespace ("Native Overlay Diff", Linux >= 5.13);
- network: slirp4netns with rootlesskit's port handler (``rootlessport``: a socket on the host
  relayed into the container's namespace); podman 4.3 has no pasta (4.4 added it);
- runtime: runc. Debian's crun 1.8 refuses a hybrid cgroup host ("cgroups in hybrid mode not
  supported"), with ``--cgroups=disabled`` too, and runc refuses ``--cgroups=disabled``; so no
  cgroup (rootless on v1), as the rootless berthd has none either;
- ``--cgroup-manager cgroupfs`` and events to a file: there is no systemd ``--user`` here.

Debian's podman package also installs ``/etc/cni/net.d/87-podman-bridge.conflist``, which
rootless podman 4.3 (netavark) does not use but berthd's CRI takes as its pod network (the first
config in ``--cni-conf-dir``): ``cni_conflict()`` names it, and the bench says so.

Each podman command pays the launcher (``unshare``, ``sh``, a tmpfs and a device node, ``setpriv``):
``launcher_ms`` measures it alone, to be weighed against the figures. remove() kills every process
of the user and of its subordinate ids by PID (that is everything podman started: its pause
process, conmon, slirp4netns, rootlessport, the containers), then removes the user and the storage.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from tests.integration.rootless.user import RootlessDaemon, RootlessUser

OPTIONS = ("--storage-driver", "overlay", "--cgroup-manager", "cgroupfs", "--events-backend", "file",
           "--runtime", "runc", "--log-level", "error")


def absent() -> str:
    """Why there is no podman column ("" when there is one)."""
    if shutil.which("podman") is None:
        return "podman is not installed (apt-get install podman): no rootless podman column"
    if shutil.which("runc") is None:
        return "runc is not installed: no rootless podman column (Debian's crun refuses a hybrid cgroup host)"
    return ""


CNI_CONF = Path("/etc/cni/net.d/87-podman-bridge.conflist")


def cni_conflict() -> str:
    """A warning when podman's package left its CNI network where berthd's CRI looks ("" if not)."""
    if CNI_CONF.exists():
        return (f"{CNI_CONF} (Debian's podman package) is berthd's CRI pod network now (the first config in "
                "/etc/cni/net.d): remove it unless that is meant")
    return ""


class RootlessPodman:
    def __init__(self, user: RootlessUser):
        self.user = user
        self.launcher = RootlessDaemon(user)  # only its command(): nothing of berth runs
        self.storage = Path(tempfile.mkdtemp(prefix="bench-podman-", dir="/var/tmp"))
        os.chmod(self.storage, 0o755)
        os.chown(self.storage, user.uid, user.gid)
        self.base = [shutil.which("podman") or "podman", "--root", str(self.storage / "root"),
                     "--runroot", str(self.storage / "run"), *OPTIONS]

    @classmethod
    def make(cls) -> RootlessPodman | None:
        if absent():
            return None
        return cls(RootlessUser.make())

    def command(self, *args: str) -> list[str]:
        return self.launcher.command([*self.base, *args])

    def out(self, *args: str, timeout: float = 120) -> str:
        r = subprocess.run(self.command(*args), capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}")
        return r.stdout

    def timed(self, *args: str) -> float:
        t0 = time.perf_counter()
        self.out(*args)
        return time.perf_counter() - t0

    def launcher_ms(self, runs: int = 10) -> float:
        """Median ms of the launcher alone (``true`` as the user, the same way as podman)."""
        xs = []
        for _ in range(runs):
            t0 = time.perf_counter()
            subprocess.run(self.launcher.command(["true"]), check=True)
            xs.append(time.perf_counter() - t0)
        return statistics.median(xs) * 1000

    def load(self, archive: Path) -> None:
        """``podman load`` of a docker-archive the user can read (copied into the storage dir)."""
        mine = self.storage / "image.tar"
        shutil.copy(archive, mine)
        os.chmod(mine, 0o644)
        try:
            self.out("load", "-i", str(mine))
        finally:
            mine.unlink()

    def remove(self) -> None:
        """Every process of the user (by PID), the user, then the storage (owned by its subordinate
        ids, removed as root)."""
        self.user.remove()
        shutil.rmtree(self.storage, ignore_errors=True)

    def leftovers(self) -> list[str]:
        """What remove() should have left nothing of (empty when all went)."""
        out = []
        if self.storage.exists():
            out.append(str(self.storage))
        try:
            import pwd
            pwd.getpwnam(self.user.name)
            out.append(f"user {self.user.name}")
        except KeyError:
            pass
        out += [f"pid {p}" for p in self.user.pids()]
        return out
