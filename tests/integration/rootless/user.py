"""A throwaway user (``useradd``, with subordinate ranges) and a rootless berthd run as it.

    with RootlessUser.make() as u:                  # userdel -r and every process of it afterwards
        d = RootlessDaemon(u); d.start()
        d.docker("run", "--rm", "busybox", "id")

    @pytest.fixture(scope="module")                 # a module's own user and berthd, busybox imported
    def rl(tmp_path_factory): yield from module_daemon(tmp_path_factory, env={...}, tool="slirp4netns")

berthd runs as the user through ``setpriv`` (it execs: nothing of the chain stays as root).
Where this interpreter sits under a directory the user cannot search (a pyenv in /root), the
launcher first makes it reachable in a private mount namespace of the daemon's own: that
directory is covered by a tmpfs of mode 755 holding binds of just the entries on the path.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.integration.daemon import ROOT

DOCKER = "/usr/local/bin/docker"
TOOLS = ("newuidmap", "newgidmap", "setpriv", "unshare", "useradd", "userdel")


def need_tools(*names: str) -> None:
    """.ci/run installs these (uidmap, util-linux, passwd): a missing one fails the test."""
    import pytest
    missing = [n for n in (names or TOOLS) if shutil.which(n) is None]
    if missing:
        pytest.fail(f"needs {', '.join(missing)} (.ci/run installs uidmap and passt)")


class RootlessUser:
    def __init__(self, name: str, subids: bool):
        self.name = name
        self.subids = subids
        pw = pwd.getpwnam(name)
        self.uid, self.gid, self.home = pw.pw_uid, pw.pw_gid, Path(pw.pw_dir)
        self._starts: dict[str, int] = {}
        self.runtime = Path(tempfile.mkdtemp(prefix="brl-", dir="/tmp"))
        os.chown(self.runtime, self.uid, self.gid)
        os.chmod(self.runtime, 0o700)

    @classmethod
    def make(cls, subids: bool = True) -> RootlessUser:
        name = f"brl{uuid.uuid4().hex[:8]}"
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", name], check=True, capture_output=True)
        ranges = [line for line in Path("/etc/subuid").read_text().splitlines() if line.startswith(f"{name}:")]
        if subids and not ranges:  # a useradd that adds none (SUB_UID_COUNT=0): add one
            subprocess.run(["usermod", "--add-subuids", "500000000-500065535", "--add-subgids",
                            "500000000-500065535", name], check=True)
        if not subids and ranges:
            subprocess.run(["usermod", "--del-subuids", "0-4294967294", "--del-subgids", "0-4294967294", name],
                           check=True)
        return cls(name, subids)

    def subuid_start(self) -> int:
        return self._start("subuid")

    def subgid_start(self) -> int:
        return self._start("subgid")

    def _start(self, kind: str) -> int:
        if kind not in self._starts:
            for line in Path(f"/etc/{kind}").read_text().splitlines():
                parts = line.split(":")
                if parts[0] == self.name:
                    self._starts[kind] = int(parts[1])
                    break
            else:
                raise AssertionError(f"{self.name} has no line in /etc/{kind}")
        return self._starts[kind]

    def pids(self) -> list[int]:
        """Every process of this user or of its subordinate ids."""
        lo = self.subuid_start() if self.subids else self.uid
        out = []
        for p in os.listdir("/proc"):
            if not p.isdigit():
                continue
            try:
                uid = os.stat(f"/proc/{p}").st_uid
            except FileNotFoundError:
                continue
            if uid == self.uid or (self.subids and lo <= uid < lo + 65536):
                out.append(int(p))
        return out

    def remove(self) -> None:
        for _ in range(50):
            pids = self.pids()
            if not pids:
                break
            for p in pids:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        subprocess.run(["userdel", "-r", self.name], capture_output=True)
        shutil.rmtree(self.runtime, ignore_errors=True)

    def __enter__(self) -> RootlessUser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def _reachable_prefix() -> list[str]:
    """Shell lines that make this interpreter reachable for another user, when it is not."""
    paths = {Path(os.path.realpath(sys.executable)), Path(sys.prefix), Path(sys.base_prefix)}
    blocked: dict[Path, set[str]] = {}
    for p in paths:
        for parent in reversed(p.parents):
            if parent != Path("/") and not os.stat(parent).st_mode & 0o001:
                blocked.setdefault(parent, set()).add(p.relative_to(parent).parts[0])
                break
    lines = []
    for i, (d, entries) in enumerate(sorted(blocked.items())):
        lines += [f"mkdir -p /tmp/.brl-stage-$$-{i}", f"mount --bind {d} /tmp/.brl-stage-$$-{i}",
                  f"mount -t tmpfs -o mode=755 tmpfs {d}"]
        for e in sorted(entries):
            lines += [f"mkdir {d}/{e}", f"mount --bind /tmp/.brl-stage-$$-{i}/{e} {d}/{e}"]
        lines += [f"umount -l /tmp/.brl-stage-$$-{i}", f"rmdir /tmp/.brl-stage-$$-{i}"]
    return lines


def _tun_for_users() -> list[str]:
    """pasta opens /dev/net/tun as the user: Debian's udev makes it 0666; where this host's is
    root's only, the daemon's private mount namespace gets a 0666 node of the same device over
    it (the host's node is untouched)."""
    if os.stat("/dev/net/tun").st_mode & 0o006 == 0o006:
        return []
    return ['t=$(mktemp -d)', 'mount -t tmpfs -o mode=755 tmpfs "$t"', 'mknod -m 666 "$t/tun" c 10 200',
            'mount --bind "$t/tun" /dev/net/tun', 'umount -l "$t"', 'rmdir "$t"']


def _fuse_for_users() -> list[str]:
    """fuse-overlayfs opens /dev/fuse as the user's engine: the same over a root-only node."""
    if not os.path.exists("/dev/fuse") or os.stat("/dev/fuse").st_mode & 0o006 == 0o006:
        return []
    return ['f=$(mktemp -d)', 'mount -t tmpfs -o mode=755 tmpfs "$f"', 'mknod -m 666 "$f/fuse" c 10 229',
            'mount --bind "$f/fuse" /dev/fuse', 'umount -l "$f"', 'rmdir "$f"']


class RootlessDaemon:
    """berthd started as ``user`` (rootless by itself: not root)."""

    def __init__(self, user: RootlessUser, args: list[str] | None = None, env: dict[str, str] | None = None):
        self.user = user
        self.args = list(args or [])
        self.extra_env = env or {}
        self.sock = user.runtime / "berth.sock"
        self.log = user.runtime / "berthd.log"  # goes with the user's runtime dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.cgroup: Path | None = None  # a cgroup v2 dir the daemon starts in (a delegated subtree's)

    @property
    def host(self) -> str:
        return f"unix://{self.sock}"

    def user_env(self) -> dict[str, str]:
        return {"HOME": str(self.user.home), "USER": self.user.name, "XDG_RUNTIME_DIR": str(self.user.runtime),
                "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "PYTHONPATH": str(ROOT),
                **self.extra_env}

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` as the user (through setpriv, which execs), with the interpreter reachable."""
        env = [f"{k}={v}" for k, v in self.user_env().items()]
        as_user = ["setpriv", f"--reuid={self.user.uid}", f"--regid={self.user.gid}", "--init-groups",
                   "env", "-i", *env, *argv]
        prefix = _reachable_prefix() + _tun_for_users() + _fuse_for_users()
        if self.cgroup is not None:
            prefix.append(f"echo $$ > {self.cgroup}/cgroup.procs")
        if not prefix:
            return as_user
        script = "set -e\n" + "\n".join(prefix) + '\nexec "$@"\n'
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *as_user]

    def start(self, timeout: float = 30) -> None:
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(self.command([sys.executable, "-m", "berth.daemon.main", *self.args]),
                                     stdout=logf, stderr=logf, cwd=ROOT)
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"berthd exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            if self.docker("version", timeout=10).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"rootless berthd did not answer: {self.log.read_text()[-3000:]}")

    def docker(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """The real docker CLI (as root, whom the socket lets in) against this berthd."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DOCKER_HOST": self.host,
               "DOCKER_CONFIG": str(self.user.runtime / ".docker-root"), "HOME": "/root"}
        return subprocess.run([DOCKER, *args], env=env, capture_output=True, text=True, timeout=timeout)

    def import_busybox(self, tar: Path) -> None:
        r = self.docker("import", "--change", 'CMD ["sh"]', str(tar), "busybox:latest")
        assert r.returncode == 0, r.stderr

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def rootfs_tar(dest: Path) -> Path:
    tar = dest / "rootfs.tar"
    if not tar.exists():
        subprocess.run([str(ROOT / "scripts" / "mkrootfs.sh"), str(tar)], check=True)
    return tar


def module_daemon(tmp_path_factory: Any, args: list[str] | None = None, env: dict[str, str] | None = None,
                  tool: str = "") -> Iterator[RootlessDaemon]:
    """For a module fixture: a throwaway user's berthd with busybox imported (``tool``, if named,
    must be installed); berthd stopped and the user removed afterwards."""
    import pytest
    need_tools()
    if tool and shutil.which(tool) is None:
        pytest.fail(f"needs {tool} (.ci/run installs it)")
    tar = rootfs_tar(tmp_path_factory.mktemp("rootfs"))
    with RootlessUser.make() as u:
        d = RootlessDaemon(u, args, env)
        try:
            d.start()
            d.import_busybox(tar)
            yield d
        finally:
            d.stop()


def registry_round_trip(d: RootlessDaemon, repo: str) -> None:
    """Push busybox to a registry on the host's loopback (started here), remove it, pull it
    back and run it: the engine's namespace reaches the host's 127.0.0.1."""
    import pytest

    from tests.integration.images.registry_proc import BINARY, RegistryProc
    if not os.path.exists(BINARY):
        pytest.fail("needs docker-registry (.ci/run installs it)")
    reg = RegistryProc().start()
    ref = f"{reg.host}/{repo}"
    try:
        assert d.docker("tag", "busybox", ref).returncode == 0
        deadline = time.monotonic() + 10
        while (r := d.docker("push", ref)).returncode != 0 and time.monotonic() < deadline:
            time.sleep(0.2)  # pasta forwards a new host port into the namespace within a second
        assert r.returncode == 0, r.stderr
        assert d.docker("rmi", ref).returncode == 0
        r = d.docker("pull", ref)
        assert r.returncode == 0, r.stderr
        assert d.docker("run", "--rm", ref, "echo", "pulled").stdout == "pulled\n"
    finally:
        d.docker("rmi", ref)
        reg.stop()
