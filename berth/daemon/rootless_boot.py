"""The host side of a rootless start (``daemon/rootless.py`` says what rootless is): new
namespaces, or the ones a previous berthd left (live restore: ``rootless.pid``); their uid/gid
maps (``newuidmap``/``newgidmap`` over the user's subordinate ranges, or a single-id map without
them); their PID 1, the holder; berthd forked into them, and the signals forwarded to it.

Only a rootless start imports this module (``daemon/main.py``, lazily).
"""

from __future__ import annotations

import fcntl
import logging
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from berth.daemon import rootless_net as network
from berth.daemon import rootless_slirp
from berth.daemon.rootless import ENV, SINGLE_ID, Paths, RootlessError
from berth.linux import idmap, prctl, sched
from berth.linux.mount import MountFlags, mount
from berth.linux.sched import CloneFlags
from berth.state.subids import parse

log = logging.getLogger("berthd")

HOLDER_FILE = "rootless.pid"  # under the exec root: the host pid of the namespaces' PID 1
LOCK_FILE = "rootless.lock"   # under the exec root: held by a berthd joining the namespaces
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
    """Every subordinate range from 0 up, then the user's own ids (newuidmap checks them): root
    in the engine and in its containers is the first subordinate id on the host, and the user
    is an id of its own above the ranges (the owner of its home, runtime dir and socket)."""
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
    lines = []
    inside = 0
    for start, count in ranges:
        lines.append((inside, start, count))
        inside += count
    lines.append((inside, own, 1))
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


def _child(ready_w: int, go_r: int, lock: Path, tool: str) -> None:
    """In the forked child: user, mount, network and pid namespaces, then (once mapped) their
    PID 1, the holder (``_holder``), whose host pid goes back on ``ready_w``. Never returns."""
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
        # Root here is a subordinate id on the host: the change of uid made this process (and
        # the holder, forked next) undumpable, and the user could not open its namespaces to
        # join them (its memory belongs to the host's user namespace, where the user has no
        # CAP_SYS_PTRACE). Being root over the namespace, it may be the user's again.
        prctl.set_dumpable(True)
        mount(None, "/", None, MountFlags.REC | MountFlags.PRIVATE)
    except OSError as e:
        os.write(ready_w, f"rootless setup failed: {e}".encode())
        os._exit(1)
    pid = os.fork()
    if pid == 0:
        _holder(lock, tool)
    os.write(ready_w, str(pid).encode())
    os._exit(0)


def _holder(lock: Path, tool: str) -> None:
    """PID 1 of the engine's pid namespace (owned by its user namespace, so the runtime may
    move in and out of its containers' pid namespaces): /proc of this namespace, every orphan
    reaped (the shims, once their berthd is gone). It holds the namespaces while a berthd or a
    container is in them, so a berthd that restarts joins them again and finds its containers
    (live restore); then it exits, and the namespaces go. A berthd that is joining holds
    ``lock``, and the holder does not exit under it."""
    try:
        mount("proc", "/proc", "proc", MountFlags.NOSUID | MountFlags.NODEV | MountFlags.NOEXEC)
        if tool == "slirp4netns":  # here: the pid namespace ends with its first process
            rootless_slirp.route_to_host_loopback()
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"berthd: rootless setup failed: {e}", file=sys.stderr)
        os._exit(1)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)
    first = time.monotonic() + 60   # the first berthd joins within this
    seen = False
    while True:
        try:
            os.wait()
            continue
        except ChildProcessError:
            pass
        running = _berthd_running()
        seen = seen or running
        if not running and (seen or time.monotonic() > first) and _unlocked(lock):
            os._exit(0)   # the lock stays taken until the namespaces are gone
        time.sleep(0.5)


def _unlocked(lock: Path) -> bool:
    """Take ``lock`` if no berthd is joining (kept: released when this process exits)."""
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    except OSError:
        return True
    return True


def _berthd_running() -> bool:
    """A berthd in this pid namespace (the holder is PID 1: its own cmdline is berthd's too)."""
    for p in os.listdir("/proc"):
        if p.isdigit() and p != "1":
            try:
                if b"berth.daemon.main" in Path(f"/proc/{p}/cmdline").read_bytes():
                    return True
            except OSError:
                pass
    return False


def _holder_pid(exec_root: Path, root: int) -> int | None:
    """The holder a previous berthd of this user left (live restore), if it is still there
    (PID 1 of its pid namespace, running as ``root``, the host id of root in the namespaces)."""
    try:
        pid = int((exec_root / HOLDER_FILE).read_text())
        status = Path(f"/proc/{pid}/status").read_text()
    except (OSError, ValueError):
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    if (fields.get("NSpid", "").split() != [str(pid), "1"] or fields.get("State", "").split()[:1] == ["Z"]
            or os.stat(f"/proc/{pid}").st_uid != root):
        return None
    return pid


def _make_holder(paths: Paths, maps: Maps, lock: int, tool: str) -> int:
    """New namespaces, mapped and plugged into the host: their holder's host pid. (``lock``,
    the caller's, is not the holder's to keep.)"""
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        os.close(go_w)
        os.close(lock)
        _child(ready_w, go_r, paths.exec_root / LOCK_FILE, tool)
    os.close(ready_w)
    os.close(go_r)
    net = None
    try:
        answer = os.read(ready_r, 4096)
        if answer != b"ok":
            raise RootlessError(answer.decode() or "the rootless child died")
        _write_maps(pid, maps)
        net = network.connect(pid, paths.exec_root, tool)
        os.write(go_w, b"1")
        answer = os.read(ready_r, 4096)
        if not answer.isdigit():
            raise RootlessError(answer.decode() or "the rootless child died")
    except BaseException:
        if net is not None:
            net.stop()
        raise
    finally:
        os.close(ready_r)
        os.close(go_w)
        os.waitpid(pid, 0)
    holder = int(answer)
    if net is not None:
        net.stop_with(holder)
    (paths.exec_root / network.NET_FILE).write_text(tool)
    (paths.exec_root / HOLDER_FILE).write_text(f"{holder}\n")
    return holder


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _join(holder: int) -> None:
    """Enter the holder's user, mount, network and pid (for children) namespaces."""
    fds = [(os.open(f"/proc/{holder}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC), flag) for name, flag in (
        ("user", CloneFlags.NEWUSER), ("mnt", CloneFlags.NEWNS), ("net", CloneFlags.NEWNET),
        ("pid", CloneFlags.NEWPID))]
    try:
        for fd, flag in fds:
            sched.setns(fd, flag)
    finally:
        for fd, _ in fds:
            os.close(fd)


def start(argv: list[str]) -> int:
    """The host side: the namespaces (a previous berthd's, whose holder is still there, or new
    ones), berthd in them, and its exit status once it ends."""
    paths = Paths.from_env()
    paths.exec_root.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Made by the user: root inside is a subordinate id, and the user's ~/.local stays the user's.
    paths.data_root.mkdir(parents=True, exist_ok=True)
    _delegated_cgroup()
    # Held until berthd is forked into the namespaces: their holder does not exit meanwhile.
    lock = os.open(paths.exec_root / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    user = pwd.getpwuid(os.getuid()).pw_name
    maps = id_maps(user, os.getuid(), os.getgid())
    holder = _holder_pid(paths.exec_root, maps.uid[0][1])
    if holder is None:
        if not maps.single:
            _tool("newuidmap")
            _tool("newgidmap")
        try:
            tool = network.choose()
        except ValueError as e:
            raise RootlessError(str(e)) from None
        holder = _make_holder(paths, maps, lock, tool)
        if maps.single:
            log.warning(SINGLE_ID_WARNING.format(user=user))
    else:
        log.info("joining the namespaces of the last berthd (holder pid %d): its containers are found again", holder)
    tool = _read(paths.exec_root / network.NET_FILE)   # the namespaces' own (a joined holder's)
    env = dict(os.environ, **{ENV: "1", network.PORT_START_ENV: str(network.unprivileged_port_start()),
                              network.NET_ENV: tool})
    _join(holder)
    pid = os.fork()
    if pid == 0:
        # Joined as the user, an id above the subordinate range there: berthd runs as root.
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
        os.execve(sys.executable, [sys.executable, "-m", "berth.daemon.main", *argv], env)
    os.close(lock)
    return _wait(pid)


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


def _wait(pid: int) -> int:
    """Forward the signals that end or reload berthd to it; its exit status."""
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(s, lambda n, _f: os.kill(pid, n))
    _, status = os.waitpid(pid, 0)
    return _status(status)


def _status(status: int) -> int:
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
