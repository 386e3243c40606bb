"""Regression guard for the start path (issue 12): what one ``docker run --rm`` costs in
processes, threads, execs and mounts, counted with ``strace -f`` on berthd and its fork server
(and so every shim, helper and init they fork). Counts, not timings: they do not depend on the
machine's load, and each of them grew before a start got slower.

If a change needs more, it must say why and raise the bound here; if it needs fewer, lower it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.integration.conftest import DOCKER
from tests.integration.daemon import Daemon, suite_args

pytestmark = pytest.mark.root

RUNS = 3
# Per `docker run --rm busybox true` on the default bridge network (measured on a cgroup v1
# host with 9 hierarchies; a v2 host mounts fewer cgroup directories):
MAX_PROCESSES = 3   # fork server -> shim -> setup helper -> init (the shim host is forked ahead,
                    # after the previous start: forkserver._Spare; traced too)
# (in a user namespace as well: the init is cloned into it and its pid namespace, PID 1 at once)
MAX_EXECVE = 1      # the container's process; nothing else is executed
MAX_UMOUNTS = 1     # the old root after pivot_root
MAX_THREADS = 1     # berthd: one to make the next spare netns (the veth is configured through a
                    # socket opened in it then, so no thread joins the namespace per run)
MAX_MOUNTS = 48     # the init's rootfs, /proc /dev /sys, cgroup dirs, masked and read-only paths;
                    # mount_setattr counted as one: it sets the cgroup tree's flags (10 remounts)
MAX_MOUNTS_USERNS = 51  # 3 more: the device nodes bound (mknod(2) needs the host's CAP_MKNOD),
                        # and the idmapping mount_setattr of the rootfs lowers
MAX_RENAMES = 6     # atomic writes: config.json, hostname, hosts, resolv.conf (each once), exit.json; the trash
MAX_SHIM_CONNECTS = 1  # berthd -> the shim's socket: the monitor's wait (Start, and the attach of
                      # a foreground run, go on the spawn connection, which berthd already holds)
MAX_FSYNCS = 0      # exit.json of a --rm container is not fsynced (2 before: the file and its
                    # directory): it is removed right after, and after a host crash without the record
MAX_HOST_READS = 0  # host facts (mountinfo, cap_last_cap) and the default seccomp program: read
                    # once by the fork server, inherited by every shim and setup helper

MAX_BYTE_READS = 2  # one-byte reads: the init's GO and START bytes (the shim read each helper
                    # report a byte at a time before: ≈20 more per run)

_CALL = re.compile(r"^(\d+)\s+(clone3?|fork|vfork|execve|mount(?:_setattr)?|umount2|rename(?:at2?)?|openat|connect|"
                   r"f(?:data)?sync|read|rmdir)\((.*)$")
_BYTE_READ = re.compile(r'^\d+, ".*", 1\)\s+= 1$')
_BYTE_READ_RESUMED = re.compile(r'^\d+\s+<\.\.\. read resumed>.*, 1\)\s+= 1$')  # after a blocking read's "unfinished"
_EXIT_RECORD = re.compile(r'.*/exit\.json"\)')  # exit.json renamed into place
_CGROUP_DIR = re.compile(r'^"/sys/fs/cgroup/')
_SHIM_SOCKET = re.compile(r'^\d+, \{sa_family=AF_UNIX, sun_path="[^"]*/[0-9a-f]{64}\.sock"')
_HOST_READ = re.compile(r'^AT_FDCWD, "(/proc/self/mountinfo|/proc/sys/kernel/cap_last_cap|[^"]*/seccomp[^"]*\.bpf)"')


def _fork_server(berthd: int) -> int:
    for pid in Path(f"/proc/{berthd}/task/{berthd}/children").read_text().split():
        if b"berth.runtime.forkserver" in Path(f"/proc/{pid}/cmdline").read_bytes():
            return int(pid)
    raise AssertionError("berthd has no fork server")


def _traced(pid: int) -> bool:
    """Every thread of ``pid`` has a tracer (or ``pid`` is gone: a shim host of the warm-up run
    that ended with its container)."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
        return all("TracerPid:\t0\n" not in (t / "status").read_text() for t in tasks)
    except FileNotFoundError:
        return True


def count_calls(trace: str) -> Counter[str]:
    """strace -f output -> {"process", "thread", "execve", "mount", "umount2"}: calls made
    (a call split into "<unfinished ...>" and "resumed" counts once). "rmdir_first": the
    cgroup removals (runs of rmdirs) that came before the shim recorded the exit."""
    out: Counter[str] = Counter()
    told = removals = 0
    last: dict[str, str] = {}  # pid -> its last call (a run of rmdirs is one removal)
    for line in trace.splitlines():
        m = _CALL.match(line)
        if not m:
            out["byte_read"] += bool(_BYTE_READ_RESUMED.match(line))
            continue
        pid, name, rest = m.groups()
        if name == "rmdir":
            if _CGROUP_DIR.match(rest) and last.get(pid) != "rmdir":
                removals += 1
                out["rmdir_first"] += removals > told
            last[pid] = name
            continue
        if name == "read":
            out["byte_read"] += bool(_BYTE_READ.match(rest))
            continue
        told += name.startswith("rename") and bool(_EXIT_RECORD.match(rest))
        last[pid] = name
        if name in ("clone", "clone3", "fork", "vfork"):
            out["thread" if "CLONE_THREAD" in rest else "process"] += 1
        elif name in ("fsync", "fdatasync"):
            out["fsync"] += 1
        elif name.startswith("rename"):
            out["rename"] += 1
        elif name == "mount_setattr":
            out["mount"] += 1
        elif name == "connect":
            out["shim_connect"] += bool(_SHIM_SOCKET.match(rest))
        elif name == "openat":
            out["host_read"] += bool(_HOST_READ.match(rest))
        else:
            out[name] += 1
    return out


def test_count_calls_parses_strace_lines() -> None:
    trace = (
        "10  clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD <unfinished ...>\n"
        "10  <... clone resumed>, child_tidptr=0x7f) = 11\n"
        "10  clone3({flags=CLONE_VM|CLONE_FS|CLONE_THREAD|CLONE_SYSVSEM, exit_signal=0}, 88) = 12\n"
        "11  execve(\"/bin/true\", [\"true\"], 0x7f /* 3 vars */ <unfinished ...>\n"
        "11  <... execve resumed>) = 0\n"
        "11  mount(\"proc\", \"/x/proc\", \"proc\", MS_NOSUID, NULL) = 0\n"
        "11  umount2(\"/.old\", MNT_DETACH) = 0\n"
        "12  rename(\"/d/.hosts.1.tmp\", \"/d/hosts\") = 0\n"
        "12  renameat2(AT_FDCWD, \"/d/c\", AT_FDCWD, \"/t/c.1\", 0) = 0\n"
        "13  openat(AT_FDCWD, \"/proc/self/mountinfo\", O_RDONLY|O_CLOEXEC) = 3\n"
        "13  openat(AT_FDCWD, \"/var/lib/berth/seccomp/ab12.bpf\", O_RDONLY|O_CLOEXEC) = 4\n"
        "13  openat(AT_FDCWD, \"/etc/passwd\", O_RDONLY|O_CLOEXEC) = 5\n"
        "14  connect(7, {sa_family=AF_UNIX, sun_path=\"/proc/self/fd/9/" + "ab" * 32 + ".sock\"}, 110) = 0\n"
        "14  connect(8, {sa_family=AF_UNIX, sun_path=\"/run/berth/forkserver.sock\"}, 30) = 0\n"
        "15  fsync(4)                          = 0\n"
        "15  fdatasync(5 <unfinished ...>\n"
        "16  read(5, \"{\", 1) = 1\n"
        "16  read(5,  <unfinished ...>\n"
        "16  <... read resumed>\"{\", 1) = 1\n"
        "16  read(5, \"{\\\"v\\\":3}\\n\", 4096) = 7\n"
        "16  rmdir(\"/sys/fs/cgroup/cpu/berth/ab\") = 0\n"
        "16  rmdir(\"/sys/fs/cgroup/pids/berth/ab\") = 0\n"
        "16  rename(\"/d/c/.exit.json.x\", \"/d/c/exit.json\") = 0\n"
        "16  rename(\"/d/c/.exit.json.y\", \"/d/c/exit.json\") = 0\n"
        "16  rmdir(\"/sys/fs/cgroup/cpu/berth/cd\") = 0\n")
    assert count_calls(trace) == Counter(process=1, thread=1, execve=1, mount=1, umount2=1, rename=4,
                                         host_read=2, shim_connect=1, fsync=2, byte_read=2, rmdir_first=1)


def _threads(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


def _settled(pid: int, timeout: float = 10) -> None:
    """Until berthd's start-up in the background is over (the CRI server's threads come a
    while after /_ping answers; on a loaded machine they were made during the traced runs):
    its thread count unchanged for half a second."""
    deadline = time.monotonic() + timeout
    n, since = _threads(pid), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < 0.5:
        time.sleep(0.05)
        if (m := _threads(pid)) != n:
            n, since = m, time.monotonic()


def _per_run(d: Daemon, image: str, tmp_path: Path) -> dict[str, float]:
    """Calls per ``docker run --rm IMAGE true`` against ``d``, traced in berthd and its fork server."""
    if shutil.which("strace") is None:
        pytest.fail("strace is not installed (.ci/run installs it)")
    assert d.proc is not None
    run = [DOCKER, "run", "--rm", image, "true"]
    subprocess.run(run, env=d.env, check=True, capture_output=True)  # warm: fork server, pools
    _settled(d.proc.pid)
    fs = _fork_server(d.proc.pid)
    # and its children: the spare shim host, forked ahead, takes the first traced run
    pids = [d.proc.pid, fs, *(int(p) for p in Path(f"/proc/{fs}/task/{fs}/children").read_text().split())]
    out = tmp_path / "trace"
    tracer = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=clone,clone3,fork,vfork,execve,mount,mount_setattr,umount2,rename,renameat,renameat2,openat,connect,fsync,fdatasync,read,rmdir",
                               "-o", str(out), *(a for p in pids for a in ("-p", str(p)))],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not all(_traced(p) for p in pids):
            assert time.monotonic() < deadline, "strace did not attach"
            time.sleep(0.02)
        for _ in range(RUNS):
            subprocess.run(run, env=d.env, check=True, capture_output=True, timeout=60)
        time.sleep(0.3)  # the shims' last calls after the CLI returned (none expected)
    finally:
        tracer.send_signal(signal.SIGINT)
        tracer.wait(10)
    calls = count_calls(out.read_text())
    per_run = {k: v / RUNS for k, v in calls.items()}
    assert per_run.get("process", 0) >= 1, f"nothing traced: {per_run}"  # the guard itself works
    print(f"per run: {per_run}")
    return per_run


def test_run_rm_forks_execs_and_mounts_no_more_than_today(tmp_path: Path) -> None:
    # a berthd of its own: the suite's is shared with other tests' containers, whose exits
    # (an exit record fsynced, a restart) would land in the traced window
    d = Daemon(args=suite_args())
    d.start()
    try:
        d.import_busybox()
        per_run = _per_run(d, "busybox:latest", tmp_path)
    finally:
        d.cleanup()
    userns = "--userns" in os.environ.get("BERTH_TEST_DAEMON_ARGS", "")  # the suite under auto
    assert per_run.get("process", 0) <= MAX_PROCESSES, per_run
    assert per_run.get("execve", 0) <= MAX_EXECVE, per_run
    assert per_run.get("thread", 0) <= MAX_THREADS, per_run
    assert per_run.get("mount", 0) <= (MAX_MOUNTS_USERNS if userns else MAX_MOUNTS), per_run
    assert per_run.get("umount2", 0) <= MAX_UMOUNTS, per_run
    assert per_run.get("rename", 0) <= MAX_RENAMES, per_run
    assert per_run.get("host_read", 0) <= MAX_HOST_READS, per_run
    assert per_run.get("fsync", 0) <= MAX_FSYNCS, per_run
    assert per_run.get("shim_connect", 0) <= MAX_SHIM_CONNECTS, per_run
    assert per_run.get("byte_read", 0) <= MAX_BYTE_READS, per_run
    # the waiters hear of the exit before the cgroup's rmdirs (the exit hop: they come after)
    assert per_run.get("rmdir_first", 0) == 0, per_run


def test_run_rm_in_a_user_namespace_forks_no_more_than_today(tmp_path: Path) -> None:
    """With ``userns-default: auto`` as many processes as without: the init is cloned into its
    user and pid namespaces at once (no holder process forked to make the user namespace
    first, no second fork for a PID 1 of the pid namespace it owns: 5 before)."""
    if not os.path.exists("/proc/self/ns/user"):
        pytest.skip("no user namespaces in this kernel")
    d = Daemon(args=["--userns-default", "auto"])
    d.base.mkdir(parents=True, exist_ok=True)
    for name in ("subuid", "subgid"):
        (d.base / name).write_text("berth:300000:1000000\n")
    d.start()
    try:
        d.import_busybox()
        per_run = _per_run(d, "busybox:latest", tmp_path)
    finally:
        d.cleanup()
    assert per_run.get("process", 0) <= MAX_PROCESSES, per_run
    assert per_run.get("execve", 0) <= MAX_EXECVE, per_run
    assert per_run.get("mount", 0) <= MAX_MOUNTS_USERNS, per_run
    assert per_run.get("umount2", 0) <= MAX_UMOUNTS, per_run
