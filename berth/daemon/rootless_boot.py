"""The host side of a rootless start (``daemon/rootless.py`` says what rootless is): the
child in a new user namespace, its uid/gid maps (``newuidmap``/``newgidmap`` over the user's
subordinate ranges, or a single-id map without them), the signals forwarded to it.

Only a rootless start imports this module (``daemon/main.py``, lazily).
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from berth.daemon import rootless_net as network
from berth.daemon.rootless import ENV, SINGLE_ID, Paths, RootlessError
from berth.linux import idmap, sched
from berth.linux.mount import MountFlags, mount
from berth.linux.sched import CloneFlags
from berth.state.subids import parse

log = logging.getLogger("berthd")

SUBUID = Path("/etc/subuid")
SUBGID = Path("/etc/subgid")
SINGLE_ID_WARNING = "no subordinate ids for {user} in /etc/subuid and /etc/subgid: " + SINGLE_ID


@dataclass(frozen=True)
class Maps:
    """The child's uid and gid maps: (inside, outside, count) lines; ``single`` without ranges."""

    uid: tuple[tuple[int, int, int], ...]
    gid: tuple[tuple[int, int, int], ...]
    single: bool


def id_maps(user: str, uid: int, gid: int, subuid: Path = SUBUID, subgid: Path = SUBGID) -> Maps:
    """The user's own ids as 0, then every subordinate range from 1 up (newuidmap checks them)."""
    ranges = []
    for path in (subuid, subgid):
        try:
            text = path.read_text()
        except FileNotFoundError:
            text = ""
        ranges.append(parse(text, user) + parse(text, str(uid)))
    if not ranges[0] or not ranges[1]:
        return Maps(((0, uid, 1),), ((0, gid, 1),), True)
    return Maps(_stack(uid, ranges[0]), _stack(gid, ranges[1]), False)


def _stack(own: int, ranges: list[tuple[int, int]]) -> tuple[tuple[int, int, int], ...]:
    lines = [(0, own, 1)]
    inside = 1
    for start, count in ranges:
        lines.append((inside, start, count))
        inside += count
    return tuple(lines)


def _map_args(lines: tuple[tuple[int, int, int], ...]) -> list[str]:
    return [str(x) for line in lines for x in line]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RootlessError(f"{name} not found: install the uidmap package (apt-get install uidmap); "
                            "rootless berthd maps your subordinate ids with newuidmap and newgidmap")
    return path


def _write_maps(pid: int, maps: Maps) -> None:
    """Set the child's maps from the host side: newuidmap/newgidmap, or by hand for one id."""
    if maps.single:
        Path(f"/proc/{pid}/setgroups").write_text("deny")
        idmap.write_id_maps(pid, "".join(f"{a} {b} {c}\n" for a, b, c in maps.uid),
                            "".join(f"{a} {b} {c}\n" for a, b, c in maps.gid))
        return
    for tool, lines in (("newuidmap", maps.uid), ("newgidmap", maps.gid)):
        r = subprocess.run([_tool(tool), str(pid), *_map_args(lines)], capture_output=True, text=True)
        if r.returncode != 0:
            raise RootlessError(f"{tool} failed: {(r.stderr or r.stdout).strip()} "
                                "(check your lines in /etc/subuid and /etc/subgid)")


def _child(argv: list[str], ready_w: int, go_r: int) -> None:
    """In the forked child: a user namespace, then (once mapped) mount, network and pid
    namespaces it owns, and their PID 1 (``_init``). Never returns."""
    try:
        # One call: the mount, network and pid namespaces are owned by the new user namespace,
        # and the host side can plug the network namespace in before berthd starts.
        sched.unshare(CloneFlags.NEWUSER | CloneFlags.NEWNS | CloneFlags.NEWNET | CloneFlags.NEWPID)
    except OSError as e:
        os.write(ready_w, f"cannot create a user namespace: {e.strerror} (user.max_user_namespaces must be "
                          "above 0, and kernel.unprivileged_userns_clone 1 where it exists)".encode())
        os._exit(1)
    os.write(ready_w, b"ok")
    if os.read(go_r, 1) != b"1":
        os._exit(1)
    try:
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
        mount(None, "/", None, MountFlags.REC | MountFlags.PRIVATE)
    except OSError as e:
        print(f"berthd: rootless setup failed: {e}", file=sys.stderr)
        os._exit(1)
    pid = os.fork()
    if pid == 0:
        _init(argv)
    os._exit(_wait(pid))


def _init(argv: list[str]) -> None:
    """PID 1 of the engine's pid namespace (owned by its user namespace, so the runtime may
    move in and out of its containers' pid namespaces): /proc of this namespace, berthd as its
    child, every orphan reaped. It exits with berthd, and the namespace's processes go with it."""
    try:
        mount("proc", "/proc", "proc", MountFlags.NOSUID | MountFlags.NODEV | MountFlags.NOEXEC)
    except OSError as e:
        print(f"berthd: rootless setup failed: mounting /proc: {e}", file=sys.stderr)
        os._exit(1)
    env = dict(os.environ, **{ENV: "1", network.PORT_START_ENV: str(network.unprivileged_port_start())})
    pid = os.fork()
    if pid == 0:
        os.execve(sys.executable, [sys.executable, "-m", "berth.daemon.main", *argv], env)
    _forward(pid)
    while True:
        reaped, status = os.wait()
        if reaped == pid:
            os._exit(_status(status))


def start(argv: list[str]) -> int:
    """The host side: make the namespaces, exec berthd inside, wait for it. -> its exit status."""
    paths = Paths.from_env()
    user = pwd.getpwuid(os.getuid()).pw_name
    maps = id_maps(user, os.getuid(), os.getgid())
    if not maps.single:
        _tool("newuidmap")
        _tool("newgidmap")
    paths.exec_root.mkdir(parents=True, exist_ok=True, mode=0o700)
    _delegated_cgroup()
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        os.close(go_w)
        _child(argv, ready_w, go_r)
    os.close(ready_w)
    os.close(go_r)
    answer = os.read(ready_r, 4096)
    os.close(ready_r)
    try:
        if answer != b"ok":
            raise RootlessError(answer.decode() or "the rootless child died")
        _write_maps(pid, maps)
        net = network.connect(pid, paths.exec_root)
    except (RootlessError, OSError):
        os.close(go_w)
        os.waitpid(pid, 0)
        raise
    os.write(go_w, b"1")
    os.close(go_w)
    if maps.single:
        log.warning(SINGLE_ID_WARNING.format(user=user))
    try:
        return _wait(pid)
    finally:
        if net is not None:
            net.stop()


def _delegated_cgroup() -> None:
    """When this process's cgroup v2 is the user's own (systemd's ``Delegate=yes``), move the
    engine's processes into a ``daemon`` leaf of it (the no-internal-processes rule), enable
    its controllers for the children, and name it as the containers' cgroup root
    (BERTH_CGROUP_ROOT), unless one is named already."""
    if os.environ.get("BERTH_CGROUP_ROOT"):
        return
    own = _own_cgroup2()
    if own is None or not os.access(own / "cgroup.procs", os.W_OK) or not os.access(own, os.W_OK):
        return
    try:
        (own / "daemon").mkdir(exist_ok=True)
        (own / "daemon" / "cgroup.procs").write_text("0")
        ctrls = (own / "cgroup.controllers").read_text().split()
        if ctrls:
            (own / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in ctrls))
    except OSError as e:
        log.warning("cgroup %s is not usable for containers (%s): limits are refused", own, e)
        return
    os.environ["BERTH_CGROUP_ROOT"] = str(own)


def _own_cgroup2() -> Path | None:
    """This process's cgroup v2 directory (on the first cgroup2 mount), if any."""
    mount = None
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        pre, _, post = line.partition(" - ")
        if post.startswith("cgroup2 "):
            mount = Path(pre.split()[4])
            break
    if mount is None:
        return None
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return mount / line[3:].lstrip("/")
    return None


def _forward(pid: int) -> None:
    """The signals that end or reload berthd go on to ``pid``."""
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(s, lambda n, _f: os.kill(pid, n))


def _wait(pid: int) -> int:
    """Forward signals to the child; its exit status."""
    _forward(pid)
    _, status = os.waitpid(pid, 0)
    return _status(status)


def _status(status: int) -> int:
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
