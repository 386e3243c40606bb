"""berth.linux wrappers called for real, each in a throwaway forked child that unshares first.

These prove flag values and the errno -> OSError mapping; nothing touches the host's namespaces.
"""

from __future__ import annotations

import fcntl
import os
import pickle
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from berth.linux import caps, fd, mount, net, prctl, rlimit, sched, uts
from berth.linux.mount import MountFlags as MF
from berth.linux.sched import CloneFlags

pytestmark = pytest.mark.root


def in_child(fn: Callable[[], Any]) -> Any:
    """Run fn in a forked child; return its result or re-raise its exception here."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover
        try:
            try:
                result: Any = ("ok", fn())
            except BaseException as e:  # noqa: BLE001
                result = ("err", e)
            os.write(w, pickle.dumps(result))
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    kind, value = pickle.loads(data)
    if kind == "err":
        raise value
    return value


def test_unshare_uts_and_sethostname() -> None:
    def child() -> tuple[str, str]:
        fd_ = os.open("/proc/self/ns/uts", os.O_RDONLY)
        sched.unshare(CloneFlags.NEWUTS)
        uts.sethostname("berth-test")
        inside = socket.gethostname()
        sched.setns(fd_, CloneFlags.NEWUTS)  # back to the host's: the name is unchanged there
        return inside, socket.gethostname()
    host = socket.gethostname()
    assert in_child(child) == ("berth-test", host)
    assert socket.gethostname() == host


def test_mount_in_private_namespace(tmp_path: Path) -> None:
    target = tmp_path / "mnt"
    target.mkdir()

    def child() -> bool:
        sched.unshare(CloneFlags.NEWNS)
        mount.mount(None, "/", None, MF.SLAVE | MF.REC)
        mount.mount("tmpfs", target, "tmpfs", MF.NOSUID | MF.NODEV, "size=1m")
        (target / "f").write_text("x")
        seen = os.path.ismount(target)
        mount.umount2(target, mount.UmountFlags.DETACH)
        return seen
    assert in_child(child) is True
    assert not os.path.ismount(target) and not (target / "f").exists()


def test_errno_mapping(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing")

    def child() -> None:
        sched.unshare(CloneFlags.NEWNS)
        mount.mount(missing, missing, None, MF.BIND)
    with pytest.raises(FileNotFoundError) as e:
        in_child(child)
    assert (e.value.strerror, e.value.filename) == ("mount", missing)
    with pytest.raises(OSError) as e2:
        in_child(lambda: mount.pivot_root(missing, missing))
    assert e2.value.strerror == "pivot_root"


def test_loopback_up_in_new_netns() -> None:
    def child() -> tuple[bool, bool]:
        sched.unshare(CloneFlags.NEWNET)
        before = bool(net.get_if_flags("lo") & net.IfFlags.UP)
        net.set_link_up("lo")
        return before, bool(net.get_if_flags("lo") & net.IfFlags.UP)
    assert in_child(child) == (False, True)


def test_caps_and_prctl() -> None:
    def child() -> tuple[bool, bool, int, bool]:
        prctl.capbset_drop(21)  # CAP_SYS_ADMIN
        dropped = not prctl.capbset_read(21)
        sets = caps.capget()
        caps.capset(caps.CapSets(sets.effective & ~1, sets.permitted, 0))  # drop CAP_CHOWN from effective
        prctl.set_no_new_privs()
        return dropped, bool(sets.effective & 1), caps.capget().effective & 1, prctl.get_no_new_privs()
    assert in_child(child) == (True, True, 0, True)


def test_rlimit_and_close_range() -> None:
    def child() -> tuple[tuple[int, int], bool]:
        rlimit.setrlimit(rlimit.Resource.NOFILE, 100, 200)
        r, w = os.pipe()
        os.set_inheritable(w, True)
        fd.close_range(3, flags=fd.CloseRangeFlags.CLOEXEC)
        cloexec = bool(fcntl.fcntl(w, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)
        return rlimit.getrlimit(rlimit.Resource.NOFILE), cloexec
    assert in_child(child) == ((100, 200), True)


def test_clone_into_user_and_pid_namespaces() -> None:
    """clone3(NEWUSER|NEWPID): the child is PID 1 of a pid namespace, in a user namespace of its
    own that the parent maps from outside; the parent sets its rlimits with prlimit."""
    def child() -> tuple[int, int, str, bool]:
        own = rlimit.getrlimit(rlimit.Resource.NOFILE)
        r, w = os.pipe()
        pid = sched.clone(CloneFlags.NEWUSER | CloneFlags.NEWPID)
        if pid == 0:  # pragma: no cover (the clone)
            code = 1
            try:
                os.close(w)
                os.read(r, 1)  # mapped
                os.setresuid(0, 0, 0)
                ok = (os.getpid() == 1 and os.getuid() == 0
                      and os.readlink("/proc/self/ns/user") != host_userns
                      and rlimit.getrlimit(rlimit.Resource.NOFILE) == (100, 200))
                code = 0 if ok else 2
            finally:
                os._exit(code)
        os.close(r)
        for name in ("uid_map", "gid_map"):
            Path(f"/proc/{pid}/{name}").write_text("0 300000 1\n")
        rlimit.setrlimit(rlimit.Resource.NOFILE, 100, 200, pid)
        uid_map = Path(f"/proc/{pid}/uid_map").read_text().split()
        os.write(w, b"m")
        os.close(w)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status), int(uid_map[1]), uid_map[2], rlimit.getrlimit(rlimit.Resource.NOFILE) == own
    host_userns = os.readlink("/proc/self/ns/user")
    assert in_child(child) == (0, 300000, "1", True)  # the clone's limit set, not the caller's
    with pytest.raises(OSError) as e:
        sched.clone(CloneFlags.NEWUSER | 0x00000200)  # with CLONE_FS: EINVAL (clone(2)), no child
    assert e.value.errno == 22 and e.value.strerror == "clone3"
